//! Conversions (FHIRPath §5.5): `toInteger()`, `toDecimal()`, `toDate()`,
//! `toQuantity()` and their `convertsTo…()` twins.

use std::{str::FromStr, sync::Arc};

use rust_decimal::Decimal;

use super::Func;
use crate::fhirpath::value::{Item, Prec, Prim, TKind, Temporal, calendar_unit, prim_to_string};

pub(super) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(super) fn parse_dec(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Decimal::from_str(s.strip_prefix('+').unwrap_or(s)).ok()
}

pub(super) fn convert<'v>(to: Func, item: &Item<'v>) -> Option<Item<'v>> {
    let p = item.prim();
    match to {
        Func::ToBoolean => Some(Item::Bool(match p {
            Prim::Bool(b) => b,
            Prim::Int(1) => true,
            Prim::Int(0) => false,
            Prim::Dec(d) if d == Decimal::ONE => true,
            Prim::Dec(d) if d.is_zero() => false,
            Prim::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => true,
                "false" | "f" | "no" | "n" | "0" | "0.0" => false,
                _ => return None,
            },
            _ => return None,
        })),
        Func::ToInteger => match p {
            Prim::Int(i) => Some(Item::Int(i)),
            Prim::Bool(b) => Some(Item::Int(i64::from(b))),
            Prim::Str(s) => parse_int(s).map(Item::Int),
            _ => None,
        },
        Func::ToDecimal => match p {
            Prim::Int(i) => Some(Item::Dec(Decimal::from(i))),
            Prim::Dec(d) => Some(Item::Dec(d)),
            Prim::Bool(b) => Some(Item::Dec(if b { Decimal::ONE } else { Decimal::ZERO })),
            Prim::Str(s) => parse_dec(s).map(Item::Dec),
            _ => None,
        },
        Func::ToString => prim_to_string(&p).map(|s| Item::Str(s.into())),
        Func::ToDate => match p {
            Prim::Str(s) => Temporal::parse(s, TKind::Date)
                .or_else(|| Temporal::parse(s, TKind::DateTime).map(date_part))
                .map(Item::Temporal),
            Prim::Temporal(t) if t.kind != TKind::Time => Some(Item::Temporal(date_part(t))),
            _ => None,
        },
        Func::ToDateTime => match p {
            Prim::Str(s) => Temporal::parse(s, TKind::DateTime).map(Item::Temporal),
            Prim::Temporal(t) if t.kind != TKind::Time => Some(Item::Temporal(Temporal {
                kind: TKind::DateTime,
                ..t
            })),
            _ => None,
        },
        Func::ToTime => match p {
            Prim::Str(s) => Temporal::parse(s, TKind::Time).map(Item::Temporal),
            Prim::Temporal(t) if t.kind == TKind::Time => Some(Item::Temporal(t)),
            _ => None,
        },
        Func::ToQuantity => match p {
            Prim::Int(i) => Some(Item::Quantity(Decimal::from(i), "1".into())),
            Prim::Dec(d) => Some(Item::Quantity(d, "1".into())),
            Prim::Quantity(v, u) => Some(Item::Quantity(v, u.into())),
            Prim::Bool(b) => Some(Item::Quantity(
                if b { Decimal::ONE } else { Decimal::ZERO },
                "1".into(),
            )),
            Prim::Str(s) => parse_quantity(s),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn date_part(t: Temporal) -> Temporal {
    Temporal {
        kind: TKind::Date,
        prec: t.prec.min(Prec::Day),
        hour: 0,
        minute: 0,
        second: 0,
        millis: 0,
        frac_digits: 0,
        tz: None,
        ..t
    }
}

/// `'<number>'`, `'<number> '<ucum>''` or `'<number> <calendar word>'`.
pub(super) fn parse_quantity<'v>(s: &str) -> Option<Item<'v>> {
    let s = s.trim();
    let (num, unit) = match s.split_once(' ') {
        Some((n, u)) => (n, Some(u.trim())),
        None => (s, None),
    };
    let value = parse_dec(num)?;
    let unit: Arc<str> = match unit {
        None => "1".into(),
        Some(u) if calendar_unit(u).is_some() => u.into(),
        Some(u) => u.strip_prefix('\'')?.strip_suffix('\'')?.into(),
    };
    Some(Item::Quantity(value, unit))
}
