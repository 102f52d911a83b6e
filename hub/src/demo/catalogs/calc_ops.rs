//! The computations behind the finance, calculator and date capabilities of "Atlas Data".

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};

use super::{Args, int, num, numbers, opt_int, round, text};

type Out = Result<Value, String>;

pub fn compound_interest(args: &Args) -> Out {
    let principal = num(args, "principal")?;
    let rate = num(args, "annual_rate_pct")? / 100.0;
    let years = num(args, "years")?;
    let n = opt_int(args, "compounds_per_year", 12, 1, 365)? as f64;
    let amount = principal * (1.0 + rate / n).powf(n * years);
    if !amount.is_finite() {
        return Err("the result is too large".into());
    }
    Ok(json!({"final_amount": round(amount, 2), "interest_earned": round(amount - principal, 2)}))
}

pub fn loan_payment(args: &Args) -> Out {
    let principal = num(args, "principal")?;
    let monthly_rate = num(args, "annual_rate_pct")? / 1200.0;
    let months = (num(args, "years")? * 12.0).round();
    if principal <= 0.0 || months < 1.0 || monthly_rate < 0.0 {
        return Err("principal and term must be positive, the rate not negative".into());
    }
    let payment = if monthly_rate == 0.0 {
        principal / months
    } else {
        principal * monthly_rate / (1.0 - (1.0 + monthly_rate).powf(-months))
    };
    let total = payment * months;
    Ok(
        json!({"monthly_payment": round(payment, 2), "total_paid": round(total, 2), "total_interest": round(total - principal, 2)}),
    )
}

fn present_value(rate: f64, flows: &[f64]) -> f64 {
    flows
        .iter()
        .enumerate()
        .map(|(t, cf)| cf / (1.0 + rate).powi(i32::try_from(t).unwrap_or(i32::MAX)))
        .sum()
}

pub fn npv(args: &Args) -> Out {
    let rate = num(args, "rate_pct")? / 100.0;
    if rate <= -1.0 {
        return Err("`rate_pct` must be above -100".into());
    }
    Ok(json!({"npv": round(present_value(rate, &numbers(args, "cash_flows")?), 2)}))
}

pub fn irr(args: &Args) -> Out {
    let flows = numbers(args, "cash_flows")?;
    let (mut low, mut high) = (-0.99, 10.0);
    let (f_low, f_high) = (present_value(low, &flows), present_value(high, &flows));
    if f_low.signum() == f_high.signum() {
        return Err(
            "no internal rate of return between -99% and 1000% (cash flows need both signs)".into(),
        );
    }
    // Bisection: 200 halvings are far beyond f64 precision on this interval.
    for _ in 0..200 {
        let mid = (low + high) / 2.0;
        let f_mid = present_value(mid, &flows);
        if f_mid.signum() == f_low.signum() {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(json!({"irr_pct": round((low + high) / 2.0 * 100.0, 4)}))
}

/// Units per US dollar: a fixed table, clearly labelled as such in every answer.
#[rustfmt::skip]
const RATES_PER_USD: [(&str, f64); 11] = [
    ("USD", 1.0), ("EUR", 0.92), ("GBP", 0.79), ("JPY", 150.0), ("CHF", 0.88), ("CAD", 1.36),
    ("AUD", 1.52), ("CNY", 7.2), ("INR", 83.0), ("BRL", 5.0), ("RUB", 90.0),
];

fn rate_of(code: &str) -> Result<f64, String> {
    let upper = code.to_ascii_uppercase();
    RATES_PER_USD
        .iter()
        .find(|(c, _)| *c == upper)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            let known: Vec<&str> = RATES_PER_USD.iter().map(|(c, _)| *c).collect();
            format!(
                "unsupported currency `{code}`; supported: {}",
                known.join(", ")
            )
        })
}

pub fn currency_convert(args: &Args) -> Out {
    let amount = num(args, "amount")?;
    let (from, to) = (text(args, "from")?, text(args, "to")?);
    let rate = rate_of(to)? / rate_of(from)?;
    Ok(
        json!({"converted": round(amount * rate, 2), "rate": round(rate, 6),
        "currency": to.to_ascii_uppercase(), "rates_as_of": "demo-fixed-table"}),
    )
}

pub fn percent_change(args: &Args) -> Out {
    let (from, to) = (num(args, "from")?, num(args, "to")?);
    if from == 0.0 {
        return Err("`from` must not be zero".into());
    }
    let change = (to - from) / from.abs() * 100.0;
    let direction = if change > 0.0 {
        "increase"
    } else if change < 0.0 {
        "decrease"
    } else {
        "unchanged"
    };
    Ok(json!({"change_pct": round(change, 4), "direction": direction}))
}

pub fn vat(args: &Args) -> Out {
    let net = num(args, "net")?;
    let tax = net * num(args, "rate_pct")? / 100.0;
    Ok(json!({"tax": round(tax, 2), "gross": round(net + tax, 2)}))
}

/// A recursive-descent parser for `+ - * / ^`, unary minus and parentheses.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.bytes.get(self.pos).copied()
    }

    fn expression(&mut self) -> Result<f64, String> {
        let mut value = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let rhs = self.term()?;
            value = if op == b'+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut value = self.unary()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.pos += 1;
            let rhs = self.unary()?;
            if op == b'/' && rhs == 0.0 {
                return Err("division by zero".into());
            }
            value = if op == b'*' { value * rhs } else { value / rhs };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
            return self.nested(|p| p.unary()).map(|v| -v);
        }
        self.power()
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.pos += 1;
            // Right-associative, and binds tighter than unary minus on its left.
            let exponent = self.nested(|p| p.unary())?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<f64, String>) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the expression is nested too deeply".into());
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let value = self.nested(|p| p.expression())?;
                if self.peek() != Some(b')') {
                    return Err(format!("expected `)` at position {}", self.pos));
                }
                self.pos += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.pos;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
                {
                    self.pos += 1;
                }
                let literal = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("");
                literal
                    .parse()
                    .map_err(|_| format!("`{literal}` is not a number"))
            }
            Some(c) => Err(format!(
                "unexpected `{}` at position {}",
                char::from(c),
                self.pos
            )),
            None => Err("the expression ends too early".into()),
        }
    }
}

pub fn evaluate(args: &Args) -> Out {
    let expression = text(args, "expression")?;
    if expression.len() > 500 {
        return Err("`expression` is longer than 500 characters".into());
    }
    let mut parser = Parser {
        bytes: expression.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let value = parser.expression()?;
    if let Some(c) = parser.peek() {
        return Err(format!(
            "unexpected `{}` at position {}",
            char::from(c),
            parser.pos
        ));
    }
    if !value.is_finite() {
        return Err("the result is not a finite number".into());
    }
    Ok(json!({"result": round(value, 10), "expression": expression}))
}

pub fn statistics(args: &Args) -> Out {
    let mut values = numbers(args, "numbers")?;
    if values.is_empty() {
        return Err("`numbers` must not be empty".into());
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mean = sum / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    Ok(
        json!({"count": values.len(), "sum": round(sum, 6), "mean": round(mean, 6), "median": median,
        "min": values[0], "max": values[values.len() - 1], "stdev": round(variance.sqrt(), 6)}),
    )
}

pub fn linear_regression(args: &Args) -> Out {
    let (x, y) = (numbers(args, "x")?, numbers(args, "y")?);
    if x.len() != y.len() || x.len() < 2 {
        return Err("`x` and `y` must have the same length, at least 2".into());
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let syy: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
    if sxx == 0.0 {
        return Err("all x values are equal; the slope is undefined".into());
    }
    let slope = sxy / sxx;
    let r_squared = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    Ok(
        json!({"slope": round(slope, 6), "intercept": round(my - slope * mx, 6), "r_squared": round(r_squared, 6)}),
    )
}

pub fn prime_factors(args: &Args) -> Out {
    let n = int(args, "n")?;
    if !(2..=1_000_000_000_000).contains(&n) {
        return Err("`n` must be between 2 and 10^12".into());
    }
    let (mut rest, mut factors, mut d) = (n, Vec::new(), 2i64);
    while d * d <= rest {
        while rest % d == 0 {
            factors.push(d);
            rest /= d;
        }
        d += if d == 2 { 1 } else { 2 };
    }
    if rest > 1 {
        factors.push(rest);
    }
    Ok(json!({"is_prime": factors.len() == 1, "factors": factors}))
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub fn gcd_lcm(args: &Args) -> Out {
    let values: Vec<u128> = args
        .get("numbers")
        .and_then(Value::as_array)
        .ok_or("`numbers` must be an array of positive integers")?
        .iter()
        .map(|v| {
            v.as_u64()
                .filter(|n| *n > 0)
                .map(u128::from)
                .ok_or_else(|| "`numbers` must contain positive integers".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let (mut g, mut l) = (0u128, 1u128);
    for v in values {
        g = gcd(g, v);
        l = (l / gcd(l, v))
            .checked_mul(v)
            .filter(|l| *l <= u128::from(u64::MAX))
            .ok_or("the least common multiple is too large")?;
    }
    Ok(json!({"gcd": u64::try_from(g).unwrap_or(0), "lcm": u64::try_from(l).unwrap_or(0)}))
}

/// `(unit, dimension, factor to the dimension's base unit)`.
#[rustfmt::skip]
const UNITS: [(&str, &str, f64); 17] = [
    ("m", "length", 1.0), ("km", "length", 1000.0), ("cm", "length", 0.01),
    ("mm", "length", 0.001), ("mi", "length", 1609.344), ("yd", "length", 0.9144),
    ("ft", "length", 0.3048), ("in", "length", 0.0254), ("kg", "mass", 1.0), ("g", "mass", 0.001),
    ("lb", "mass", 0.453_592_37), ("oz", "mass", 0.028_349_523_125), ("l", "volume", 1.0),
    ("ml", "volume", 0.001), ("gal", "volume", 3.785_411_784), ("qt", "volume", 0.946_352_946),
    ("cup", "volume", 0.236_588_236_5),
];

fn unit(name: &str) -> Result<(&'static str, f64), String> {
    UNITS
        .iter()
        .find(|(u, _, _)| u.eq_ignore_ascii_case(name))
        .map(|(_, d, f)| (*d, *f))
        .ok_or_else(|| format!("unknown unit `{name}`"))
}

pub fn unit_convert(args: &Args) -> Out {
    let value = num(args, "value")?;
    let (from, to) = (text(args, "from")?, text(args, "to")?);
    let ((from_dim, from_factor), (to_dim, to_factor)) = (unit(from)?, unit(to)?);
    if from_dim != to_dim {
        return Err(format!(
            "cannot convert {from_dim} ({from}) to {to_dim} ({to})"
        ));
    }
    Ok(json!({"value": round(value * from_factor / to_factor, 6), "unit": to.to_ascii_lowercase()}))
}

fn date(args: &Args, key: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text(args, key)?, "%Y-%m-%d")
        .map_err(|e| format!("`{key}` is not a valid YYYY-MM-DD date: {e}"))
}

pub fn day_of_week(args: &Args) -> Out {
    let d = date(args, "date")?;
    Ok(
        json!({"weekday": d.format("%A").to_string(), "iso_week": d.iso_week().week(), "day_of_year": d.ordinal()}),
    )
}

pub fn add_days(args: &Args) -> Out {
    let days = opt_int(args, "days", 0, -100_000, 100_000)?;
    let d = date(args, "date")?
        .checked_add_signed(chrono::TimeDelta::days(days))
        .ok_or("the resulting date is out of range")?;
    Ok(json!({"date": d.format("%Y-%m-%d").to_string(), "weekday": d.format("%A").to_string()}))
}

pub fn unix_to_iso(args: &Args) -> Out {
    let ts = int(args, "timestamp")?;
    let at = chrono::DateTime::from_timestamp(ts, 0).ok_or("`timestamp` is out of range")?;
    Ok(
        json!({"iso": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(), "date": at.format("%Y-%m-%d").to_string()}),
    )
}
