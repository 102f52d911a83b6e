//! The computations behind the geography and weather capabilities of "Atlas Data".

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Args, num, opt_int, opt_text, round, text};

type Out = Result<Value, String>;
const EARTH_RADIUS_KM: f64 = 6371.0088;
const GEOHASH_ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

fn points(args: &Args) -> Result<(f64, f64, f64, f64), String> {
    let (lat1, lon1, lat2, lon2) = (
        num(args, "lat1")?,
        num(args, "lon1")?,
        num(args, "lat2")?,
        num(args, "lon2")?,
    );
    if lat1.abs() > 90.0 || lat2.abs() > 90.0 || lon1.abs() > 180.0 || lon2.abs() > 180.0 {
        return Err("latitudes must be within ±90 and longitudes within ±180".into());
    }
    Ok((
        lat1.to_radians(),
        lon1.to_radians(),
        lat2.to_radians(),
        lon2.to_radians(),
    ))
}

pub fn distance(args: &Args) -> Out {
    let (lat1, lon1, lat2, lon2) = points(args)?;
    let a = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    let km = 2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin();
    let (value, unit) = match opt_text(args, "unit", "km") {
        "km" => (km, "km"),
        "mi" => (km / 1.609_344, "mi"),
        _ => return Err("`unit` must be `km` or `mi`".into()),
    };
    Ok(json!({"distance": round(value, 2), "unit": unit}))
}

fn compass(degrees: f64) -> &'static str {
    #[rustfmt::skip]
    const POINTS: [&str; 16] = [
        "N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW",
        "NW", "NNW",
    ];
    let index = ((degrees / 22.5).round() as usize) % 16;
    POINTS[index]
}

pub fn bearing(args: &Args) -> Out {
    let (lat1, lon1, lat2, lon2) = points(args)?;
    let y = (lon2 - lon1).sin() * lat2.cos();
    let x = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * (lon2 - lon1).cos();
    let degrees = (y.atan2(x).to_degrees() + 360.0) % 360.0;
    Ok(json!({"bearing_deg": round(degrees, 2), "compass": compass(degrees)}))
}

pub fn midpoint(args: &Args) -> Out {
    let (lat1, lon1, lat2, lon2) = points(args)?;
    let bx = lat2.cos() * (lon2 - lon1).cos();
    let by = lat2.cos() * (lon2 - lon1).sin();
    let lat = (lat1.sin() + lat2.sin()).atan2(((lat1.cos() + bx).powi(2) + by.powi(2)).sqrt());
    let lon = lon1 + by.atan2(lat1.cos() + bx);
    let lon_deg = (lon.to_degrees() + 540.0) % 360.0 - 180.0;
    Ok(json!({"latitude": round(lat.to_degrees(), 5), "longitude": round(lon_deg, 5)}))
}

pub fn geohash_encode(args: &Args) -> Out {
    let (lat, lon) = (num(args, "latitude")?, num(args, "longitude")?);
    if lat.abs() > 90.0 || lon.abs() > 180.0 {
        return Err("coordinates out of range".into());
    }
    let precision = usize::try_from(opt_int(args, "precision", 9, 1, 12)?).unwrap_or(9);
    let (mut lat_range, mut lon_range) = ((-90.0, 90.0), (-180.0, 180.0));
    let mut hash = String::with_capacity(precision);
    let (mut bits, mut bit_count, mut even) = (0usize, 0, true);
    while hash.len() < precision {
        let (range, value): (&mut (f64, f64), f64) = if even {
            (&mut lon_range, lon)
        } else {
            (&mut lat_range, lat)
        };
        let mid = (range.0 + range.1) / 2.0;
        bits <<= 1;
        if value >= mid {
            bits |= 1;
            range.0 = mid;
        } else {
            range.1 = mid;
        }
        even = !even;
        bit_count += 1;
        if bit_count == 5 {
            hash.push(char::from(GEOHASH_ALPHABET[bits]));
            bits = 0;
            bit_count = 0;
        }
    }
    Ok(json!({"geohash": hash}))
}

pub fn geohash_decode(args: &Args) -> Out {
    let hash = text(args, "geohash")?.to_ascii_lowercase();
    if hash.is_empty() || hash.len() > 12 {
        return Err("`geohash` must have 1 to 12 characters".into());
    }
    let (mut lat_range, mut lon_range) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut even = true;
    for c in hash.bytes() {
        let value = GEOHASH_ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| format!("`{}` is not a geohash character", char::from(c)))?;
        for shift in (0..5).rev() {
            let range = if even { &mut lon_range } else { &mut lat_range };
            let mid = (range.0 + range.1) / 2.0;
            if (value >> shift) & 1 == 1 {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    Ok(json!({
        "latitude": round((lat_range.0 + lat_range.1) / 2.0, 7),
        "longitude": round((lon_range.0 + lon_range.1) / 2.0, 7),
        "lat_error": round((lat_range.1 - lat_range.0) / 2.0, 7),
        "lon_error": round((lon_range.1 - lon_range.0) / 2.0, 7),
    }))
}

/// `(name, country, latitude, longitude, time zone)`.
#[rustfmt::skip]
const CITIES: [(&str, &str, f64, f64, &str); 24] = [
    ("London", "GB", 51.5074, -0.1278, "Europe/London"),
    ("Paris", "FR", 48.8566, 2.3522, "Europe/Paris"),
    ("Berlin", "DE", 52.52, 13.405, "Europe/Berlin"),
    ("Madrid", "ES", 40.4168, -3.7038, "Europe/Madrid"),
    ("Rome", "IT", 41.9028, 12.4964, "Europe/Rome"),
    ("Oslo", "NO", 59.9139, 10.7522, "Europe/Oslo"),
    ("Moscow", "RU", 55.7558, 37.6173, "Europe/Moscow"),
    ("New York", "US", 40.7128, -74.006, "America/New_York"), ( "Los Angeles", "US", 34.0522,
    -118.2437, "America/Los_Angeles", ), ("Chicago", "US", 41.8781, -87.6298, "America/Chicago"),
    ("Toronto", "CA", 43.6532, -79.3832, "America/Toronto"), ( "Mexico City", "MX", 19.4326,
    -99.1332, "America/Mexico_City", ),
    ("Sao Paulo", "BR", -23.5505, -46.6333, "America/Sao_Paulo"), ( "Buenos Aires", "AR", -34.6037,
    -58.3816, "America/Argentina/Buenos_Aires", ),
    ("Cairo", "EG", 30.0444, 31.2357, "Africa/Cairo"),
    ("Lagos", "NG", 6.5244, 3.3792, "Africa/Lagos"),
    ("Nairobi", "KE", -1.2921, 36.8219, "Africa/Nairobi"),
    ("Dubai", "AE", 25.2048, 55.2708, "Asia/Dubai"),
    ("Mumbai", "IN", 19.076, 72.8777, "Asia/Kolkata"),
    ("Beijing", "CN", 39.9042, 116.4074, "Asia/Shanghai"),
    ("Tokyo", "JP", 35.6762, 139.6503, "Asia/Tokyo"),
    ("Seoul", "KR", 37.5665, 126.978, "Asia/Seoul"),
    ("Singapore", "SG", 1.3521, 103.8198, "Asia/Singapore"),
    ("Sydney", "AU", -33.8688, 151.2093, "Australia/Sydney"),
];

fn find_city(name: &str) -> Option<&'static (&'static str, &'static str, f64, f64, &'static str)> {
    let wanted = name.trim().to_lowercase().replace('ã', "a");
    CITIES.iter().find(|c| c.0.to_lowercase() == wanted)
}

pub fn city_lookup(args: &Args) -> Out {
    let name = text(args, "city")?;
    let (city, country, lat, lon, tz) = find_city(name).ok_or_else(|| {
        let known: Vec<&str> = CITIES.iter().map(|c| c.0).collect();
        format!("unknown city `{name}`; known cities: {}", known.join(", "))
    })?;
    Ok(json!({"city": city, "country": country, "latitude": lat, "longitude": lon, "timezone": tz}))
}

/// 32 deterministic bytes for a simulation key.
fn seed_bytes(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A typical temperature for a city: warmer near the equator when the city is known.
fn base_temperature(city: &str) -> f64 {
    find_city(city).map_or(15.0, |c| 28.0 - 0.4 * c.2.abs())
}

const CONDITIONS: [&str; 6] = [
    "sunny",
    "partly cloudy",
    "cloudy",
    "light rain",
    "rain",
    "windy",
];

fn condition(byte: u8, temperature_c: f64) -> &'static str {
    let c = CONDITIONS[usize::from(byte) % CONDITIONS.len()];
    if temperature_c < 0.0 && c.contains("rain") {
        "snow"
    } else {
        c
    }
}

pub fn weather_current(args: &Args) -> Out {
    let city = text(args, "city")?.trim();
    if city.is_empty() {
        return Err("`city` must not be empty".into());
    }
    let date = opt_text(args, "date", "");
    let b = seed_bytes(&format!("now|{}|{date}", city.to_lowercase()));
    let temperature = round(
        base_temperature(city) + f64::from(b[0] % 160) / 10.0 - 8.0,
        1,
    );
    Ok(json!({
        "city": city,
        "temperature_c": temperature,
        "temperature_f": round(temperature * 9.0 / 5.0 + 32.0, 1),
        "condition": condition(b[1], temperature),
        "humidity_pct": 30 + u32::from(b[2]) % 61,
        "wind_kph": u32::from(b[3]) % 41,
        "simulated": true,
    }))
}

pub fn weather_forecast(args: &Args) -> Out {
    let city = text(args, "city")?.trim();
    if city.is_empty() {
        return Err("`city` must not be empty".into());
    }
    let days = opt_int(args, "days", 3, 1, 7)?;
    let base = base_temperature(city);
    let forecast: Vec<Value> = (1..=days)
        .map(|day| {
            let b = seed_bytes(&format!("day|{}|{day}", city.to_lowercase()));
            let high = round(base + f64::from(b[0] % 120) / 10.0 - 4.0, 1);
            let low = round(high - 3.0 - f64::from(b[1] % 80) / 10.0, 1);
            json!({"day": day, "high_c": high, "low_c": low, "condition": condition(b[2], low),
                "precipitation_chance_pct": u32::from(b[3]) % 101})
        })
        .collect();
    Ok(json!({"city": city, "days": forecast, "simulated": true}))
}

fn to_celsius(value: f64, unit: &str) -> Result<f64, String> {
    match unit {
        "C" => Ok(value),
        "F" => Ok((value - 32.0) * 5.0 / 9.0),
        "K" => Ok(value - 273.15),
        other => Err(format!(
            "unknown temperature unit `{other}` (use C, F or K)"
        )),
    }
}

pub fn convert_temperature(args: &Args) -> Out {
    let celsius = to_celsius(num(args, "value")?, text(args, "from")?)?;
    if celsius < -273.15 - 1e-9 {
        return Err("the temperature is below absolute zero".into());
    }
    let to = text(args, "to")?;
    let value = match to {
        "C" => celsius,
        "F" => celsius * 9.0 / 5.0 + 32.0,
        "K" => celsius + 273.15,
        other => {
            return Err(format!(
                "unknown temperature unit `{other}` (use C, F or K)"
            ));
        }
    };
    Ok(json!({"value": round(value, 2), "unit": to}))
}

pub fn heat_index(args: &Args) -> Out {
    let t = num(args, "temperature_f")?;
    let rh = num(args, "humidity_pct")?;
    if !(0.0..=100.0).contains(&rh) {
        return Err("`humidity_pct` must be between 0 and 100".into());
    }
    let simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094);
    let hi = if (simple + t) / 2.0 < 80.0 {
        simple
    } else {
        -42.379 + 2.049_015_23 * t + 10.143_331_27 * rh
            - 0.224_755_41 * t * rh
            - 0.006_837_83 * t * t
            - 0.054_817_17 * rh * rh
            + 0.001_228_74 * t * t * rh
            + 0.000_852_82 * t * rh * rh
            - 0.000_001_99 * t * t * rh * rh
    };
    let category = match hi {
        h if h >= 125.0 => "extreme danger",
        h if h >= 103.0 => "danger",
        h if h >= 90.0 => "extreme caution",
        h if h >= 80.0 => "caution",
        _ => "none",
    };
    Ok(
        json!({"heat_index_f": round(hi, 1), "heat_index_c": round((hi - 32.0) * 5.0 / 9.0, 1), "category": category}),
    )
}
