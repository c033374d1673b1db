//! Runtime values of FHIRPath: items that borrow nodes of the input JSON
//! (never copied) or hold computed System values (Decimal, Date, ...). Owns
//! equality, equivalence and ordering, including partial-precision dates.

use std::{cmp::Ordering, fmt, str::FromStr, sync::Arc};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rust_decimal::Decimal;
use serde_json::Value;

/// A collection: the only value shape in FHIRPath.
pub type Collection<'v> = Vec<Item<'v>>;

/// One element of a collection.
#[derive(Debug, Clone)]
pub enum Item<'v> {
    /// A node of the input (or of a variable), borrowed.
    Node(Node<'v>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(Arc<str>),
    Temporal(Temporal),
    /// Value and unit (UCUM code or calendar word).
    Quantity(Decimal, Arc<str>),
    /// Result of `type()`: namespace and name.
    Type(&'static str, Arc<str>),
}

/// A borrowed JSON node with what FHIR JSON keeps beside it.
#[derive(Debug, Clone, Copy)]
pub struct Node<'v> {
    /// The value itself (`Null` for a primitive that only has extensions).
    pub value: &'v Value,
    /// The `_name` sibling of a primitive (its `id` and `extension`).
    pub ext: Option<&'v Value>,
    /// The type suffix when reached through a choice element (`valueQuantity`
    /// gives `Quantity`): the only type information we have without a model.
    pub hint: Option<&'v str>,
}

impl<'v> Node<'v> {
    pub fn plain(value: &'v Value) -> Self {
        Node {
            value,
            ext: None,
            hint: None,
        }
    }
}

/// Borrowed view of an item as a primitive, for operators and functions.
#[derive(Debug, Clone)]
pub(crate) enum Prim<'a> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'a str),
    Temporal(Temporal),
    Quantity(Decimal, &'a str),
    Other,
}

pub(crate) fn json_number(n: &serde_json::Number) -> Prim<'static> {
    if let Some(i) = n.as_i64() {
        Prim::Int(i)
    } else {
        // Via text so 0.1 stays 0.1 rather than the nearest binary double.
        match Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
        {
            Ok(d) => Prim::Dec(d),
            Err(_) => Prim::Other,
        }
    }
}

impl<'v> Item<'v> {
    pub fn node(value: &'v Value) -> Self {
        Item::Node(Node::plain(value))
    }

    pub(crate) fn prim(&self) -> Prim<'_> {
        match self {
            Item::Bool(b) => Prim::Bool(*b),
            Item::Int(i) => Prim::Int(*i),
            Item::Dec(d) => Prim::Dec(*d),
            Item::Str(s) => Prim::Str(s),
            Item::Temporal(t) => Prim::Temporal(*t),
            Item::Quantity(v, u) => Prim::Quantity(*v, u),
            Item::Type(..) => Prim::Other,
            Item::Node(n) => match n.value {
                Value::Bool(b) => Prim::Bool(*b),
                Value::Number(num) => json_number(num),
                Value::String(s) => {
                    // Choice elements tell us a string is a date/time.
                    let kind = match n.hint {
                        Some("Date") => Some(TKind::Date),
                        Some("DateTime" | "Instant") => Some(TKind::DateTime),
                        Some("Time") => Some(TKind::Time),
                        _ => None,
                    };
                    match kind.and_then(|k| Temporal::parse(s, k)) {
                        Some(t) => Prim::Temporal(t),
                        None => Prim::Str(s),
                    }
                }
                Value::Object(o) if is_quantity_object(n.hint, o) => {
                    let value = match o.get("value") {
                        Some(Value::Number(num)) => match json_number(num) {
                            Prim::Int(i) => Decimal::from(i),
                            Prim::Dec(d) => d,
                            _ => return Prim::Other,
                        },
                        _ => return Prim::Other,
                    };
                    let unit = o
                        .get("code")
                        .or_else(|| o.get("unit"))
                        .and_then(Value::as_str)
                        .unwrap_or("1");
                    Prim::Quantity(value, unit)
                }
                _ => Prim::Other,
            },
        }
    }

    /// The string value, for items that are strings (System or FHIR).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) => Some(s),
            Item::Node(Node {
                value: Value::String(s),
                ..
            }) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self.prim() {
            Prim::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self.prim() {
            Prim::Int(i) => Some(i),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&'v serde_json::Map<String, Value>> {
        match self {
            Item::Node(n) => n.value.as_object(),
            _ => None,
        }
    }

    /// JSON form of the item, for callers outside the engine: FHIR JSON
    /// primitives, dates as strings, quantities as `{value, unit}`.
    pub fn to_json(&self) -> Value {
        match self {
            Item::Node(n) => n.value.clone(),
            Item::Bool(b) => Value::Bool(*b),
            Item::Int(i) => Value::from(*i),
            Item::Dec(d) => decimal_json(d),
            Item::Str(s) => Value::String(s.to_string()),
            Item::Temporal(t) => Value::String(t.to_string()),
            Item::Quantity(v, u) => {
                serde_json::json!({ "value": decimal_json(v), "unit": u.as_ref() })
            }
            Item::Type(ns, name) => serde_json::json!({ "namespace": ns, "name": name.as_ref() }),
        }
    }
}

fn is_quantity_object(hint: Option<&str>, o: &serde_json::Map<String, Value>) -> bool {
    match hint {
        Some(
            "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity"
            | "MoneyQuantity",
        ) => true,
        Some(_) => false,
        None => {
            o.get("value").is_some_and(Value::is_number)
                && (o.contains_key("code") || o.contains_key("unit"))
                && !o.contains_key("resourceType")
        }
    }
}

fn decimal_json(d: &Decimal) -> Value {
    // serde_json without arbitrary precision only holds f64; integral
    // decimals stay exact as integers when they have no fraction digits.
    if d.scale() == 0
        && let Ok(i) = i64::try_from(*d)
    {
        return Value::from(i);
    }
    serde_json::Number::from_f64(f64::try_from(*d).unwrap_or(f64::NAN))
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Text of a System value as `toString()` renders it.
pub(crate) fn prim_to_string(p: &Prim<'_>) -> Option<String> {
    Some(match p {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => d.to_string(),
        Prim::Str(s) => s.to_string(),
        Prim::Temporal(t) => t.to_string(),
        Prim::Quantity(v, u) => {
            if is_calendar_unit(u) {
                format!("{v} {u}")
            } else {
                format!("{v} '{u}'")
            }
        }
        Prim::Other => return None,
    })
}

pub(crate) fn is_calendar_unit(u: &str) -> bool {
    calendar_unit(u).is_some()
}

/// Calendar duration words and their precision.
pub(crate) fn calendar_unit(u: &str) -> Option<Prec> {
    Some(match u {
        "year" | "years" => Prec::Year,
        "month" | "months" => Prec::Month,
        "week" | "weeks" | "day" | "days" => Prec::Day,
        "hour" | "hours" => Prec::Hour,
        "minute" | "minutes" => Prec::Minute,
        "second" | "seconds" | "millisecond" | "milliseconds" => Prec::Second,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Dates and times with partial precision.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TKind {
    Date,
    DateTime,
    Time,
}

/// Precision levels; milliseconds count as part of seconds when comparing
/// (FHIRPath treats `10:30:00` and `10:30:00.0` as the same precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prec {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Temporal {
    pub kind: TKind,
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// Digits written after the seconds' decimal point (0 = none).
    pub frac_digits: u8,
    pub prec: Prec,
    /// Zone offset in minutes east of UTC, when written.
    pub tz: Option<i32>,
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    if s.len() < n || !s.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

impl Temporal {
    fn blank(kind: TKind) -> Self {
        Temporal {
            kind,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            frac_digits: 0,
            prec: Prec::Year,
            tz: None,
        }
    }

    /// Parses the body of an `@` literal (Date, DateTime or `T`-prefixed Time).
    pub fn parse_literal(s: &str) -> Option<Self> {
        if let Some(time) = s.strip_prefix('T') {
            return Temporal::parse(time, TKind::Time);
        }
        if s.contains('T') {
            Temporal::parse(s, TKind::DateTime)
        } else {
            Temporal::parse(s, TKind::Date)
        }
    }

    /// Parses FHIR/FHIRPath text of the given kind; `None` when malformed.
    /// A DateTime may stop at any precision (`2015`, `2015-02T`, ...).
    pub fn parse(s: &str, kind: TKind) -> Option<Self> {
        let mut t = Temporal::blank(kind);
        let rest = if kind == TKind::Time {
            let rest = t.parse_time(s)?;
            // A Time has no zone in FHIRPath.
            if !rest.is_empty() {
                return None;
            }
            return Some(t);
        } else {
            t.parse_date(s)?
        };
        if kind == TKind::Date {
            return rest.is_empty().then_some(t);
        }
        let Some(rest) = rest.strip_prefix('T') else {
            // DateTime text without a time part ("2015-02-04").
            return rest.is_empty().then_some(t);
        };
        if rest.is_empty() {
            return Some(t);
        }
        let rest = if rest.starts_with(|c: char| c.is_ascii_digit()) {
            t.parse_time(rest)?
        } else {
            rest
        };
        let rest = t.parse_zone(rest)?;
        rest.is_empty().then_some(t)
    }

    fn parse_date<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        let (y, mut rest) = digits(s, 4)?;
        self.year = y as i32;
        self.prec = Prec::Year;
        if let Some(r) = rest.strip_prefix('-') {
            let (m, r) = digits(r, 2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            self.month = m;
            self.prec = Prec::Month;
            rest = r;
            if let Some(r) = rest.strip_prefix('-') {
                let (d, r) = digits(r, 2)?;
                NaiveDate::from_ymd_opt(self.year, m, d)?;
                self.day = d;
                self.prec = Prec::Day;
                rest = r;
            }
        }
        Some(rest)
    }

    fn parse_time<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        let (h, mut rest) = digits(s, 2)?;
        if h > 23 {
            return None;
        }
        self.hour = h;
        self.prec = Prec::Hour;
        if let Some(r) = rest.strip_prefix(':') {
            let (m, r) = digits(r, 2)?;
            if m > 59 {
                return None;
            }
            self.minute = m;
            self.prec = Prec::Minute;
            rest = r;
            if let Some(r) = rest.strip_prefix(':') {
                let (sec, r) = digits(r, 2)?;
                if sec > 59 {
                    return None;
                }
                self.second = sec;
                self.prec = Prec::Second;
                rest = r;
                if let Some(r) = rest.strip_prefix('.') {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 {
                        return None;
                    }
                    let frac = &r[..n.min(3)];
                    self.millis = format!("{frac:0<3}").parse().ok()?;
                    self.frac_digits = n.min(9) as u8;
                    rest = &r[n..];
                }
            }
        }
        Some(rest)
    }

    fn parse_zone<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        if let Some(r) = s.strip_prefix('Z') {
            self.tz = Some(0);
            return Some(r);
        }
        let sign = match s.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Some(s),
        };
        let (h, r) = digits(&s[1..], 2)?;
        let r = r.strip_prefix(':')?;
        let (m, r) = digits(r, 2)?;
        self.tz = Some(sign * (h as i32 * 60 + m as i32));
        Some(r)
    }

    fn naive(&self) -> Option<NaiveDateTime> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, self.day)?;
        let time = NaiveTime::from_hms_milli_opt(self.hour, self.minute, self.second, self.millis)?;
        Some(NaiveDateTime::new(date, time))
    }

    fn set_naive(&mut self, n: NaiveDateTime) {
        self.year = n.year();
        self.month = n.month();
        self.day = n.day();
        self.hour = n.hour();
        self.minute = n.minute();
        self.second = n.second();
        self.millis = n.nanosecond() / 1_000_000;
    }

    /// Shifts a zoned DateTime (with a time part) to UTC so two zones compare.
    fn to_utc(self) -> Self {
        match (self.kind, self.tz) {
            (TKind::DateTime, Some(off)) if off != 0 && self.prec >= Prec::Hour => {
                let mut t = self;
                if let Some(n) = self.naive() {
                    t.set_naive(n - Duration::minutes(off as i64));
                    t.tz = Some(0);
                }
                t
            }
            _ => self,
        }
    }

    fn fields(&self) -> [i64; 6] {
        [
            self.year as i64,
            self.month as i64,
            self.day as i64,
            self.hour as i64,
            self.minute as i64,
            self.second as i64 * 1000 + self.millis as i64,
        ]
    }

    fn range(&self) -> (usize, usize) {
        // Index of the first and last field this value carries.
        let last = self.prec as usize;
        match self.kind {
            TKind::Time => (3, last),
            _ => (0, last),
        }
    }

    /// Ordering at the common precision; `None` when the values differ in
    /// precision and agree on every field they share (incomparable), or
    /// are of different kinds.
    pub fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let time_a = self.kind == TKind::Time;
        let time_b = other.kind == TKind::Time;
        if time_a != time_b {
            return None;
        }
        let timed = self.prec >= Prec::Hour && other.prec >= Prec::Hour;
        // One zoned and one unzoned time of day cannot be ordered: the
        // unzoned one's offset is unknown.
        if timed && self.kind == TKind::DateTime && self.tz.is_some() != other.tz.is_some() {
            return None;
        }
        let (a, b) = if self.tz.is_some() && other.tz.is_some() {
            (self.to_utc(), other.to_utc())
        } else {
            (*self, *other)
        };
        let (fa, fb) = (a.fields(), b.fields());
        let (start, la) = a.range();
        let (_, lb) = b.range();
        let common = la.min(lb);
        for i in start..=common {
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        (la == lb).then_some(Ordering::Equal)
    }

    pub fn equals(&self, other: &Temporal) -> Option<bool> {
        match self.compare(other) {
            Some(o) => Some(o == Ordering::Equal),
            // Different kinds (Date vs Time) are simply unequal.
            None if (self.kind == TKind::Time) != (other.kind == TKind::Time) => Some(false),
            None => None,
        }
    }

    pub fn equivalent(&self, other: &Temporal) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// Adds a calendar or UCUM time quantity; `None` when unsupported.
    pub fn add(&self, value: Decimal, unit: &str) -> Option<Temporal> {
        let unit = match unit {
            "a" => "year",
            "mo" => "month",
            "wk" => "week",
            "d" => "day",
            "h" => "hour",
            "min" => "minute",
            "s" => "second",
            "ms" => "millisecond",
            u => u.trim_end_matches('s'),
        };
        let mut t = *self;
        let whole = i64::try_from(value.trunc()).ok()?;
        match unit {
            "year" => t.year = t.year.checked_add(i32::try_from(whole).ok()?)?,
            "month" => {
                let total = t.year as i64 * 12 + (t.month as i64 - 1) + whole;
                t.year = i32::try_from(total.div_euclid(12)).ok()?;
                t.month = (total.rem_euclid(12) + 1) as u32;
            }
            _ => {
                let dur = match unit {
                    "week" => Duration::weeks(whole),
                    "day" => Duration::days(whole),
                    "hour" => Duration::hours(whole),
                    "minute" => Duration::minutes(whole),
                    "second" => Duration::milliseconds(
                        i64::try_from((value * Decimal::from(1000)).trunc()).ok()?,
                    ),
                    "millisecond" => Duration::milliseconds(whole),
                    _ => return None,
                };
                if t.kind == TKind::Time {
                    let base = NaiveTime::from_hms_milli_opt(t.hour, t.minute, t.second, t.millis)?;
                    let (n, _) = base.overflowing_add_signed(dur);
                    t.hour = n.hour();
                    t.minute = n.minute();
                    t.second = n.second();
                    t.millis = n.nanosecond() / 1_000_000;
                } else {
                    let n = t.naive()?.checked_add_signed(dur)?;
                    t.set_naive(n);
                }
                return Some(t);
            }
        }
        // Clamp the day after year/month arithmetic (Jan 31 + 1 month).
        while t.day > 28 && NaiveDate::from_ymd_opt(t.year, t.month, t.day).is_none() {
            t.day -= 1;
        }
        Some(t)
    }
}

impl fmt::Display for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.prec;
        if self.kind != TKind::Time {
            write!(f, "{:04}", self.year)?;
            if p >= Prec::Month {
                write!(f, "-{:02}", self.month)?;
            }
            if p >= Prec::Day {
                write!(f, "-{:02}", self.day)?;
            }
            if self.kind == TKind::Date {
                return Ok(());
            }
            if p < Prec::Hour {
                return Ok(());
            }
            f.write_str("T")?;
        }
        write!(f, "{:02}", self.hour)?;
        if p >= Prec::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if p >= Prec::Second {
            write!(f, ":{:02}", self.second)?;
            if self.frac_digits > 0 {
                write!(f, ".{:03}", self.millis)?;
            }
        }
        match self.tz {
            Some(0) => f.write_str("Z"),
            Some(off) => {
                let sign = if off < 0 { '-' } else { '+' };
                write!(f, "{sign}{:02}:{:02}", off.abs() / 60, off.abs() % 60)
            }
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// Equality, equivalence and ordering of items.

fn to_dec(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

fn str_as_temporal(s: &str, like: &Temporal) -> Option<Temporal> {
    match like.kind {
        TKind::Time => Temporal::parse(s, TKind::Time),
        _ if s.contains('T') => Temporal::parse(s, TKind::DateTime),
        _ => Temporal::parse(s, TKind::Date),
    }
}

/// `=` on two items: `None` means "empty" (incomparable precision).
pub(crate) fn equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    let (pa, pb) = (a.prim(), b.prim());
    match (&pa, &pb) {
        (Prim::Int(x), Prim::Int(y)) => Some(x == y),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            Some(to_dec(&pa) == to_dec(&pb))
        }
        (Prim::Str(x), Prim::Str(y)) => Some(x == y),
        (Prim::Bool(x), Prim::Bool(y)) => Some(x == y),
        (Prim::Temporal(x), Prim::Temporal(y)) => x.equals(y),
        (Prim::Str(s), Prim::Temporal(t)) | (Prim::Temporal(t), Prim::Str(s)) => {
            match str_as_temporal(s, t) {
                Some(st) => st.equals(t),
                None => Some(false),
            }
        }
        (Prim::Quantity(v1, u1), Prim::Quantity(v2, u2)) => {
            common_unit(*v1, u1, *v2, u2).map(|(a, b)| a == b)
        }
        (Prim::Other, Prim::Other) => match (a, b) {
            (Item::Node(x), Item::Node(y)) => Some(x.value == y.value),
            (Item::Type(n1, t1), Item::Type(n2, t2)) => Some(n1 == n2 && t1 == t2),
            _ => Some(false),
        },
        _ => Some(false),
    }
}

fn same_calendar_unit(a: &str, b: &str) -> bool {
    a.trim_end_matches('s') == b.trim_end_matches('s') && is_calendar_unit(a) && is_calendar_unit(b)
}

/// A few fixed-ratio units (mass, length, definite durations), enough to
/// compare `1 'kg'` with `2000 'g'` or `7 days` with `1 'wk'`. Not UCUM:
/// units outside this table only compare with the identical unit. Years and
/// months are calendar-dependent and deliberately absent.
fn unit_factor(u: &str) -> Option<(&'static str, Decimal)> {
    let d = |s: &str| Decimal::from_str(s).ok();
    Some(match u {
        "g" => ("g", Decimal::ONE),
        "mg" => ("g", d("0.001")?),
        "ug" | "mcg" => ("g", d("0.000001")?),
        "kg" => ("g", Decimal::from(1000)),
        "[lb_av]" => ("g", d("453.59237")?),
        "m" => ("m", Decimal::ONE),
        "cm" => ("m", d("0.01")?),
        "mm" => ("m", d("0.001")?),
        "km" => ("m", Decimal::from(1000)),
        "ms" | "millisecond" | "milliseconds" => ("s", d("0.001")?),
        "s" | "second" | "seconds" => ("s", Decimal::ONE),
        "min" | "minute" | "minutes" => ("s", Decimal::from(60)),
        "h" | "hour" | "hours" => ("s", Decimal::from(3600)),
        "d" | "day" | "days" => ("s", Decimal::from(86400)),
        "wk" | "week" | "weeks" => ("s", Decimal::from(604800)),
        _ => return None,
    })
}

/// Both quantities in a common unit, when they are commensurable.
fn common_unit(v1: Decimal, u1: &str, v2: Decimal, u2: &str) -> Option<(Decimal, Decimal)> {
    if u1 == u2 || same_calendar_unit(u1, u2) {
        return Some((v1, v2));
    }
    let (d1, f1) = unit_factor(u1)?;
    let (d2, f2) = unit_factor(u2)?;
    (d1 == d2).then(|| (v1 * f1, v2 * f2))
}

/// `~` on two items.
pub(crate) fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    let (pa, pb) = (a.prim(), b.prim());
    match (&pa, &pb) {
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let (Some(x), Some(y)) = (to_dec(&pa), to_dec(&pb)) else {
                return false;
            };
            // Compared at the precision of the less precise operand.
            let scale = x.scale().min(y.scale());
            x.round_dp(scale) == y.round_dp(scale)
        }
        (Prim::Str(x), Prim::Str(y)) => normalize_ws(x) == normalize_ws(y),
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Temporal(x), Prim::Temporal(y)) => x.equivalent(y),
        (Prim::Str(s), Prim::Temporal(t)) | (Prim::Temporal(t), Prim::Str(s)) => {
            str_as_temporal(s, t).is_some_and(|st| st.equivalent(t))
        }
        (Prim::Quantity(v1, u1), Prim::Quantity(v2, u2)) => common_unit(*v1, u1, *v2, u2)
            .is_some_and(|(a, b)| {
                let scale = a.scale().min(b.scale());
                a.round_dp(scale) == b.round_dp(scale)
            }),
        _ => equals(a, b) == Some(true),
    }
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Ordering for `<`, `>`, `<=`, `>=`: `Ok(None)` is empty (incomparable
/// precision), `Err` is a type error (the operands cannot be compared).
pub(crate) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>, String> {
    let (pa, pb) = (a.prim(), b.prim());
    match (&pa, &pb) {
        (Prim::Int(x), Prim::Int(y)) => Ok(Some(x.cmp(y))),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            Ok(to_dec(&pa).partial_cmp(&to_dec(&pb)))
        }
        (Prim::Str(x), Prim::Str(y)) => Ok(Some(x.cmp(y))),
        (Prim::Temporal(x), Prim::Temporal(y)) => Ok(x.compare(y)),
        (Prim::Str(s), Prim::Temporal(t)) => match str_as_temporal(s, t) {
            Some(st) => Ok(st.compare(t)),
            None => Err(format!("cannot compare '{s}' with a date/time")),
        },
        (Prim::Temporal(t), Prim::Str(s)) => match str_as_temporal(s, t) {
            Some(st) => Ok(t.compare(&st)),
            None => Err(format!("cannot compare a date/time with '{s}'")),
        },
        // Other units would need UCUM, which we do not implement: empty.
        (Prim::Quantity(v1, u1), Prim::Quantity(v2, u2)) => {
            Ok(common_unit(*v1, u1, *v2, u2).and_then(|(a, b)| a.partial_cmp(&b)))
        }
        _ => Err("operands of a comparison must be of the same type".into()),
    }
}
