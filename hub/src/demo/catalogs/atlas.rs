//! "Atlas Data": geography, simulated weather, finance formulas and calculators.

use serde_json::{Value, json};

use super::{input, output, prop, prop_with};
use crate::demo::spec::CapabilitySpec as Cap;

/// The computations, from the two modules that hold them.
mod ops {
    pub use super::super::calc_ops::*;
    pub use super::super::geo_ops::*;
}

const GEO: &str = "atlas-geo";
const WEATHER: &str = "atlas-weather";
const FINANCE: &str = "atlas-finance";
const CALC: &str = "atlas-calc";

fn lat(description: &str) -> Value {
    prop_with(
        "number",
        description,
        json!({"minimum": -90, "maximum": 90}),
    )
}

fn lon(description: &str) -> Value {
    prop_with(
        "number",
        description,
        json!({"minimum": -180, "maximum": 180}),
    )
}

fn two_points() -> Value {
    input(
        vec![
            ("lat1", lat("Latitude of the first point, decimal degrees")),
            ("lon1", lon("Longitude of the first point, decimal degrees")),
            ("lat2", lat("Latitude of the second point, decimal degrees")),
            (
                "lon2",
                lon("Longitude of the second point, decimal degrees"),
            ),
        ],
        &["lat1", "lon1", "lat2", "lon2"],
    )
}

fn date_prop(description: &str) -> Value {
    prop_with(
        "string",
        description,
        json!({"pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}),
    )
}

fn number_list(description: &str) -> Value {
    prop_with(
        "array",
        description,
        json!({"items": {"type": "number"}, "minItems": 1, "maxItems": 10000}),
    )
}

/// Paris → London, the example for the two-point capabilities.
fn paris_london() -> Value {
    json!({"lat1": 48.8566, "lon1": 2.3522, "lat2": 51.5074, "lon2": -0.1278})
}

/// The catalog.
pub fn capabilities() -> Vec<Cap> {
    let mut caps = geography();
    caps.extend(weather());
    caps.extend(finance());
    caps.extend(calculators());
    caps
}

fn geography() -> Vec<Cap> {
    vec![
        Cap::new(GEO, "geo.distance@v1", "Great-circle distance", "geo",
            "Distance between two coordinates along the Earth's surface (haversine), in kilometres or miles.",
            ops::distance)
            .input({
                let mut schema = two_points();
                schema["properties"]["unit"] = prop_with("string", "Result unit", json!({"enum": ["km", "mi"], "default": "km"}));
                schema
            })
            .output(output(&[("distance", "number"), ("unit", "string")]))
            .price(0.002).quality(6, 0.999)
            .example(paris_london()),
        Cap::new(GEO, "geo.bearing@v1", "Initial bearing", "geo",
            "Initial compass bearing from one coordinate to another, in degrees and as a 16-point compass direction.",
            ops::bearing)
            .input(two_points())
            .output(output(&[("bearing_deg", "number"), ("compass", "string")]))
            .quality(5, 0.999)
            .example(paris_london()),
        Cap::new(GEO, "geo.midpoint@v1", "Geographic midpoint", "geo",
            "The point halfway between two coordinates along the great circle.",
            ops::midpoint)
            .input(two_points())
            .output(output(&[("latitude", "number"), ("longitude", "number")]))
            .price(0.001).quality(5, 0.999)
            .example(paris_london()),
        Cap::new(GEO, "geo.geohash_encode@v1", "Geohash encode", "geo",
            "Encode latitude and longitude as a geohash string of a chosen precision.",
            ops::geohash_encode)
            .input(input(vec![
                ("latitude", lat("Latitude, decimal degrees")),
                ("longitude", lon("Longitude, decimal degrees")),
                ("precision", prop_with("integer", "Geohash length", json!({"minimum": 1, "maximum": 12, "default": 9}))),
            ], &["latitude", "longitude"]))
            .output(output(&[("geohash", "string")]))
            .quality(3, 1.0)
            .example(json!({"latitude": 57.64911, "longitude": 10.40744, "precision": 11})),
        Cap::new(GEO, "geo.geohash_decode@v1", "Geohash decode", "geo",
            "Decode a geohash into the latitude and longitude of its cell centre, with the cell's error margins.",
            ops::geohash_decode)
            .input(input(vec![("geohash", prop_with("string", "Geohash (base32, 1–12 characters)",
                json!({"minLength": 1, "maxLength": 12})))], &["geohash"]))
            .output(output(&[("latitude", "number"), ("longitude", "number"), ("lat_error", "number"), ("lon_error", "number")]))
            .quality(3, 1.0)
            .example(json!({"geohash": "u09tvw0"})),
        Cap::new(GEO, "geo.city_lookup@v1", "City coordinates lookup", "geo",
            "Look up a major world city: coordinates, country code and time zone (built-in gazetteer of capital and major cities).",
            ops::city_lookup)
            .input(input(vec![("city", prop("string", "City name in English, e.g. `Tokyo`"))], &["city"]))
            .output(output(&[("city", "string"), ("country", "string"), ("latitude", "number"), ("longitude", "number"), ("timezone", "string")]))
            .price(0.005).quality(8, 0.998)
            .example(json!({"city": "Tokyo"})),
    ]
}

fn weather() -> Vec<Cap> {
    vec![
        Cap::new(WEATHER, "weather.current@v1", "Current weather (simulated)", "weather",
            "Current weather conditions for a city: temperature, sky, humidity and wind. Simulated deterministically for the demo.",
            ops::weather_current)
            .input(input(vec![
                ("city", prop("string", "City name, e.g. `Paris`")),
                ("date", date_prop("Day to simulate, YYYY-MM-DD (optional)")),
            ], &["city"]))
            .output(output(&[("city", "string"), ("temperature_c", "number"), ("temperature_f", "number"),
                ("condition", "string"), ("humidity_pct", "integer"), ("wind_kph", "integer"), ("simulated", "boolean")]))
            .price(0.01).quality(35, 0.995)
            .example(json!({"city": "Paris"})),
        Cap::new(WEATHER, "weather.forecast@v1", "Weather forecast (simulated)", "weather",
            "Daily weather forecast for a city for up to seven days: highs, lows, sky and chance of rain. Simulated deterministically for the demo.",
            ops::weather_forecast)
            .input(input(vec![
                ("city", prop("string", "City name, e.g. `Berlin`")),
                ("days", prop_with("integer", "Number of days", json!({"minimum": 1, "maximum": 7, "default": 3}))),
            ], &["city"]))
            .output(output(&[("city", "string"), ("days", "array"), ("simulated", "boolean")]))
            .price(0.02).quality(45, 0.994)
            .example(json!({"city": "Berlin", "days": 3})),
        Cap::new(WEATHER, "weather.convert_temperature@v1", "Temperature conversion", "weather",
            "Convert a temperature between Celsius, Fahrenheit and Kelvin.",
            ops::convert_temperature)
            .input(input(vec![
                ("value", prop("number", "The temperature")),
                ("from", prop_with("string", "Unit of `value`", json!({"enum": ["C", "F", "K"]}))),
                ("to", prop_with("string", "Unit wanted", json!({"enum": ["C", "F", "K"]}))),
            ], &["value", "from", "to"]))
            .output(output(&[("value", "number"), ("unit", "string")]))
            .quality(2, 1.0)
            .example(json!({"value": 100, "from": "C", "to": "F"})),
        Cap::new(WEATHER, "weather.heat_index@v1", "Heat index", "weather",
            "Apparent (\"feels like\") temperature from air temperature and relative humidity, NOAA formula, with the risk category.",
            ops::heat_index)
            .input(input(vec![
                ("temperature_f", prop("number", "Air temperature in °F")),
                ("humidity_pct", prop_with("number", "Relative humidity in percent", json!({"minimum": 0, "maximum": 100}))),
            ], &["temperature_f", "humidity_pct"]))
            .output(output(&[("heat_index_f", "number"), ("heat_index_c", "number"), ("category", "string")]))
            .price(0.001).quality(3, 1.0)
            .example(json!({"temperature_f": 95, "humidity_pct": 60})),
    ]
}

fn finance() -> Vec<Cap> {
    vec![
        Cap::new(FINANCE, "finance.compound_interest@v1", "Compound interest", "finance",
            "Future value of a deposit with compound interest, and the interest earned.",
            ops::compound_interest)
            .input(input(vec![
                ("principal", prop_with("number", "Initial deposit", json!({"minimum": 0}))),
                ("annual_rate_pct", prop("number", "Yearly interest rate in percent")),
                ("years", prop_with("number", "Duration in years", json!({"minimum": 0, "maximum": 200}))),
                ("compounds_per_year", prop_with("integer", "Compounding periods per year", json!({"minimum": 1, "maximum": 365, "default": 12}))),
            ], &["principal", "annual_rate_pct", "years"]))
            .output(output(&[("final_amount", "number"), ("interest_earned", "number")]))
            .price(0.002).quality(3, 1.0)
            .example(json!({"principal": 1000, "annual_rate_pct": 5, "years": 10})),
        Cap::new(FINANCE, "finance.loan_payment@v1", "Loan payment calculator", "finance",
            "Monthly payment of an amortising loan or mortgage, with the total paid and total interest.",
            ops::loan_payment)
            .input(input(vec![
                ("principal", prop_with("number", "Amount borrowed", json!({"exclusiveMinimum": 0}))),
                ("annual_rate_pct", prop_with("number", "Yearly interest rate in percent", json!({"minimum": 0}))),
                ("years", prop_with("number", "Loan term in years", json!({"exclusiveMinimum": 0, "maximum": 100}))),
            ], &["principal", "annual_rate_pct", "years"]))
            .output(output(&[("monthly_payment", "number"), ("total_paid", "number"), ("total_interest", "number")]))
            .price(0.003).quality(3, 1.0)
            .example(json!({"principal": 250000, "annual_rate_pct": 4.5, "years": 30})),
        Cap::new(FINANCE, "finance.npv@v1", "Net present value", "finance",
            "Net present value of a series of yearly cash flows (the first at time zero) at a discount rate.",
            ops::npv)
            .input(input(vec![
                ("rate_pct", prop_with("number", "Discount rate in percent", json!({"exclusiveMinimum": -100}))),
                ("cash_flows", number_list("Cash flows, first one now (usually negative)")),
            ], &["rate_pct", "cash_flows"]))
            .output(output(&[("npv", "number")]))
            .price(0.003).quality(3, 1.0)
            .example(json!({"rate_pct": 8, "cash_flows": [-1000, 300, 400, 500]})),
        Cap::new(FINANCE, "finance.irr@v1", "Internal rate of return", "finance",
            "Internal rate of return of a series of yearly cash flows (the rate where NPV is zero).",
            ops::irr)
            .input(input(vec![("cash_flows", number_list("Cash flows, first one now; needs both signs"))], &["cash_flows"]))
            .output(output(&[("irr_pct", "number")]))
            .price(0.005).quality(4, 0.999)
            .example(json!({"cash_flows": [-1000, 300, 400, 500]})),
        Cap::new(FINANCE, "finance.currency_convert@v1", "Currency conversion (demo rates)", "finance",
            "Convert an amount between USD, EUR, GBP, JPY, CHF, CAD, AUD, CNY, INR, BRL and RUB using a fixed demo rate table.",
            ops::currency_convert)
            .input(input(vec![
                ("amount", prop_with("number", "Amount to convert", json!({"minimum": 0}))),
                ("from", prop_with("string", "ISO 4217 code of `amount`", json!({"minLength": 3, "maxLength": 3}))),
                ("to", prop_with("string", "ISO 4217 code wanted", json!({"minLength": 3, "maxLength": 3}))),
            ], &["amount", "from", "to"]))
            .output(output(&[("converted", "number"), ("rate", "number"), ("currency", "string"), ("rates_as_of", "string")]))
            .price(0.004).quality(7, 0.999)
            .example(json!({"amount": 100, "from": "USD", "to": "EUR"})),
        Cap::new(FINANCE, "finance.percent_change@v1", "Percent change", "finance",
            "Percentage change from an old value to a new value.",
            ops::percent_change)
            .input(input(vec![
                ("from", prop("number", "Old value (not zero)")),
                ("to", prop("number", "New value")),
            ], &["from", "to"]))
            .output(output(&[("change_pct", "number"), ("direction", "string")]))
            .quality(2, 1.0)
            .example(json!({"from": 80, "to": 100})),
        Cap::new(FINANCE, "finance.vat@v1", "VAT / sales tax", "finance",
            "Add value-added tax or sales tax to a net amount: the tax and the gross amount.",
            ops::vat)
            .input(input(vec![
                ("net", prop_with("number", "Net amount", json!({"minimum": 0}))),
                ("rate_pct", prop_with("number", "Tax rate in percent", json!({"minimum": 0, "maximum": 100}))),
            ], &["net", "rate_pct"]))
            .output(output(&[("tax", "number"), ("gross", "number")]))
            .quality(2, 1.0)
            .example(json!({"net": 100, "rate_pct": 20})),
    ]
}

fn calculators() -> Vec<Cap> {
    vec![
        Cap::new(CALC, "calc.evaluate@v1", "Arithmetic calculator", "math",
            "Evaluate an arithmetic expression with + - * / ^, parentheses and decimals, e.g. `(2 + 3) * 4^2`.",
            ops::evaluate)
            .input(input(vec![("expression", prop_with("string", "The expression", json!({"maxLength": 500})))], &["expression"]))
            .output(output(&[("result", "number"), ("expression", "string")]))
            .quality(2, 1.0)
            .example(json!({"expression": "(2 + 3) * 4^2 - 10 / 4"})),
        Cap::new(CALC, "calc.statistics@v1", "Descriptive statistics", "math",
            "Count, sum, mean, median, minimum, maximum and standard deviation of a list of numbers.",
            ops::statistics)
            .input(input(vec![("numbers", number_list("The data"))], &["numbers"]))
            .output(output(&[("count", "integer"), ("sum", "number"), ("mean", "number"), ("median", "number"),
                ("min", "number"), ("max", "number"), ("stdev", "number")]))
            .price(0.002).quality(4, 1.0)
            .example(json!({"numbers": [2, 4, 4, 4, 5, 5, 7, 9]})),
        Cap::new(CALC, "calc.linear_regression@v1", "Linear regression", "math",
            "Least-squares line through paired x and y values: slope, intercept and R².",
            ops::linear_regression)
            .input(input(vec![
                ("x", prop_with("array", "x values", json!({"items": {"type": "number"}, "minItems": 2, "maxItems": 10000}))),
                ("y", prop_with("array", "y values, same length as x", json!({"items": {"type": "number"}, "minItems": 2, "maxItems": 10000}))),
            ], &["x", "y"]))
            .output(output(&[("slope", "number"), ("intercept", "number"), ("r_squared", "number")]))
            .price(0.004).quality(5, 1.0)
            .example(json!({"x": [1, 2, 3, 4], "y": [2.1, 3.9, 6.2, 7.8]})),
        Cap::new(CALC, "calc.prime_factors@v1", "Prime factorisation", "math",
            "Factor an integer into primes and tell whether it is prime.",
            ops::prime_factors)
            .input(input(vec![("n", prop_with("integer", "Integer to factor", json!({"minimum": 2, "maximum": 1_000_000_000_000_i64})))], &["n"]))
            .output(output(&[("factors", "array"), ("is_prime", "boolean")]))
            .quality(3, 1.0)
            .example(json!({"n": 360})),
        Cap::new(CALC, "calc.gcd_lcm@v1", "GCD and LCM", "math",
            "Greatest common divisor and least common multiple of a list of positive integers.",
            ops::gcd_lcm)
            .input(input(vec![("numbers", prop_with("array", "Positive integers",
                json!({"items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 100})))], &["numbers"]))
            .output(output(&[("gcd", "integer"), ("lcm", "integer")]))
            .quality(2, 1.0)
            .example(json!({"numbers": [12, 18, 30]})),
        Cap::new(CALC, "calc.unit_convert@v1", "Unit conversion", "math",
            "Convert lengths (m, km, cm, mm, mi, yd, ft, in), masses (kg, g, lb, oz) and volumes (l, ml, gal, qt, cup).",
            ops::unit_convert)
            .input(input(vec![
                ("value", prop("number", "Quantity to convert")),
                ("from", prop("string", "Unit of `value`, e.g. `mi`")),
                ("to", prop("string", "Unit wanted, e.g. `km`")),
            ], &["value", "from", "to"]))
            .output(output(&[("value", "number"), ("unit", "string")]))
            .price(0.001).quality(2, 1.0)
            .example(json!({"value": 26.2, "from": "mi", "to": "km"})),
        Cap::new(CALC, "time.day_of_week@v1", "Day of the week", "time",
            "Weekday, ISO week number and day of the year of a calendar date.",
            ops::day_of_week)
            .input(input(vec![("date", date_prop("Date, YYYY-MM-DD"))], &["date"]))
            .output(output(&[("weekday", "string"), ("iso_week", "integer"), ("day_of_year", "integer")]))
            .quality(2, 1.0)
            .example(json!({"date": "1969-07-20"})),
        Cap::new(CALC, "time.add_days@v1", "Date arithmetic", "time",
            "Add (or subtract) a number of days to a calendar date.",
            ops::add_days)
            .input(input(vec![
                ("date", date_prop("Start date, YYYY-MM-DD")),
                ("days", prop_with("integer", "Days to add; negative subtracts", json!({"minimum": -100000, "maximum": 100000}))),
            ], &["date", "days"]))
            .output(output(&[("date", "string"), ("weekday", "string")]))
            .quality(2, 1.0)
            .example(json!({"date": "2024-02-27", "days": 3})),
        Cap::new(CALC, "time.unix_to_iso@v1", "Unix time to ISO 8601", "time",
            "Convert a Unix timestamp (seconds since 1970) to an ISO 8601 UTC date-time.",
            ops::unix_to_iso)
            .input(input(vec![("timestamp", prop_with("integer", "Seconds since 1970-01-01T00:00:00Z",
                json!({"minimum": -62135596800_i64, "maximum": 253402300799_i64})))], &["timestamp"]))
            .output(output(&[("iso", "string"), ("date", "string")]))
            .quality(2, 1.0)
            .example(json!({"timestamp": 1700000000})),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    fn run(cid: &str, input: Value) -> Result<Value, String> {
        let caps = super::capabilities();
        let cap = caps.iter().find(|c| c.capability_id == cid).unwrap();
        (cap.op)(input.as_object().unwrap())
    }

    fn num(v: &Value, key: &str) -> f64 {
        v[key].as_f64().unwrap()
    }

    #[test]
    fn known_answers() {
        let d = run("geo.distance@v1", super::paris_london()).unwrap();
        assert!((num(&d, "distance") - 343.5).abs() < 1.0, "{d}");
        assert_eq!(
            run(
                "geo.geohash_encode@v1",
                json!({"latitude": 57.64911, "longitude": 10.40744, "precision": 11})
            )
            .unwrap()["geohash"],
            "u4pruydqqvj"
        );
        let p = run("geo.geohash_decode@v1", json!({"geohash": "u4pruydqqvj"})).unwrap();
        assert!(
            (num(&p, "latitude") - 57.64911).abs() < 1e-4
                && (num(&p, "longitude") - 10.40744).abs() < 1e-4
        );
        assert_eq!(
            run(
                "geo.bearing@v1",
                json!({"lat1": 0, "lon1": 0, "lat2": 10, "lon2": 0})
            )
            .unwrap()["compass"],
            "N"
        );
        assert!(run("geo.city_lookup@v1", json!({"city": "Atlantis"})).is_err());
        assert_eq!(
            run(
                "weather.convert_temperature@v1",
                json!({"value": 100, "from": "C", "to": "F"})
            )
            .unwrap()["value"],
            212.0
        );
        let w1 = run("weather.current@v1", json!({"city": "Oslo"})).unwrap();
        assert_eq!(
            w1,
            run("weather.current@v1", json!({"city": " oslo "}))
                .unwrap()
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("city".into(), json!("Oslo"));
                    Value::Object(o)
                })
                .unwrap()
        );
        assert_eq!(
            run("weather.forecast@v1", json!({"city": "Oslo", "days": 5})).unwrap()["days"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        let ci = run(
            "finance.compound_interest@v1",
            json!({"principal": 1000, "annual_rate_pct": 5, "years": 10, "compounds_per_year": 1}),
        )
        .unwrap();
        assert_eq!(num(&ci, "final_amount"), 1628.89);
        let loan = run(
            "finance.loan_payment@v1",
            json!({"principal": 200000, "annual_rate_pct": 6, "years": 30}),
        )
        .unwrap();
        assert_eq!(num(&loan, "monthly_payment"), 1199.10);
        let irr = run("finance.irr@v1", json!({"cash_flows": [-100, 110]})).unwrap();
        assert!((num(&irr, "irr_pct") - 10.0).abs() < 1e-3);
        assert!(run("finance.irr@v1", json!({"cash_flows": [100, 110]})).is_err());
        assert!(
            run(
                "finance.currency_convert@v1",
                json!({"amount": 1, "from": "USD", "to": "XXX"})
            )
            .is_err()
        );
        assert_eq!(
            run(
                "calc.evaluate@v1",
                json!({"expression": "(2 + 3) * 4^2 - 10 / 4"})
            )
            .unwrap()["result"],
            77.5
        );
        assert_eq!(
            run("calc.evaluate@v1", json!({"expression": "-2^2 + 2*-3"})).unwrap()["result"],
            -10.0
        );
        assert!(run("calc.evaluate@v1", json!({"expression": "1/0"})).is_err());
        assert!(run("calc.evaluate@v1", json!({"expression": "2 +"})).is_err());
        assert!(run("calc.evaluate@v1", json!({"expression": "(".repeat(400)})).is_err());
        let stats = run(
            "calc.statistics@v1",
            json!({"numbers": [2, 4, 4, 4, 5, 5, 7, 9]}),
        )
        .unwrap();
        assert_eq!(
            (
                num(&stats, "mean"),
                num(&stats, "stdev"),
                num(&stats, "median")
            ),
            (5.0, 2.0, 4.5)
        );
        assert_eq!(
            run("calc.prime_factors@v1", json!({"n": 360})).unwrap()["factors"],
            json!([2, 2, 2, 3, 3, 5])
        );
        assert_eq!(
            run("calc.prime_factors@v1", json!({"n": 999_999_000_001_i64})).unwrap()["is_prime"],
            true
        );
        assert_eq!(
            run("calc.gcd_lcm@v1", json!({"numbers": [12, 18, 30]})).unwrap(),
            json!({"gcd": 6, "lcm": 180})
        );
        assert!(
            run(
                "calc.unit_convert@v1",
                json!({"value": 1, "from": "kg", "to": "km"})
            )
            .is_err()
        );
        assert_eq!(
            run("time.day_of_week@v1", json!({"date": "1969-07-20"})).unwrap()["weekday"],
            "Sunday"
        );
        assert_eq!(
            run("time.add_days@v1", json!({"date": "2024-02-27", "days": 3})).unwrap()["date"],
            "2024-03-01"
        );
        assert_eq!(
            run("time.unix_to_iso@v1", json!({"timestamp": 0})).unwrap()["iso"],
            "1970-01-01T00:00:00Z"
        );
    }
}
