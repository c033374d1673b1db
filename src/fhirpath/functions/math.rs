//! Math (FHIRPath §5.7): exact decimals, not f64, wherever the result can be
//! exact.

use rust_decimal::{Decimal, RoundingStrategy};

use super::{Func, def, err};
use crate::fhirpath::{
    eval::Result,
    value::{Item, Prim},
};

pub(super) fn math<'v>(func: Func, x: Prim<'_>, arg: Option<Prim<'_>>) -> Result<Option<Item<'v>>> {
    let as_dec = |p: &Prim<'_>| match p {
        Prim::Int(i) => Some(Decimal::from(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    };
    if let (Func::Abs, Prim::Quantity(v, u)) = (func, &x) {
        return Ok(Some(Item::Quantity(v.abs(), (*u).into())));
    }
    let Some(d) = as_dec(&x) else {
        return err(format!("{}() expects a number", def(func).name));
    };
    let is_int = matches!(x, Prim::Int(_));
    let int = |d: Decimal| i64::try_from(d).ok().map(Item::Int);
    let from_f64 = |f: f64| {
        if f.is_finite() {
            Decimal::from_f64_retain(f).map(|d| Item::Dec(d.round_dp(14).normalize()))
        } else {
            None
        }
    };
    let f = f64::try_from(d).unwrap_or(f64::NAN);
    Ok(match func {
        Func::Abs => {
            if is_int {
                int(d.abs())
            } else {
                Some(Item::Dec(d.abs()))
            }
        }
        Func::Ceiling => int(d.ceil()),
        Func::Floor => int(d.floor()),
        Func::Truncate => int(d.trunc()),
        Func::Round => {
            let places = match arg {
                Some(Prim::Int(p)) if p >= 0 => p as u32,
                Some(_) => return err("round() expects a non-negative integer precision"),
                None => 0,
            };
            Some(Item::Dec(d.round_dp_with_strategy(
                places,
                RoundingStrategy::MidpointAwayFromZero,
            )))
        }
        Func::Exp => from_f64(f.exp()),
        Func::Ln => {
            if d <= Decimal::ZERO {
                None
            } else {
                from_f64(f.ln())
            }
        }
        Func::Sqrt => {
            if d < Decimal::ZERO {
                None
            } else {
                from_f64(f.sqrt())
            }
        }
        Func::Log => {
            let Some(base) = arg.as_ref().and_then(as_dec) else {
                return err("log() expects a number base");
            };
            let b = f64::try_from(base).unwrap_or(f64::NAN);
            if d <= Decimal::ZERO || b <= 0.0 {
                None
            } else {
                from_f64(f.ln() / b.ln())
            }
        }
        Func::Power => {
            let Some(exp) = arg.as_ref().and_then(as_dec) else {
                return err("power() expects a number exponent");
            };
            if is_int && matches!(arg, Some(Prim::Int(e)) if e >= 0) {
                let e = i64::try_from(exp).unwrap_or(0);
                let base = i64::try_from(d).unwrap_or(0);
                u32::try_from(e)
                    .ok()
                    .and_then(|e| base.checked_pow(e))
                    .map(Item::Int)
            } else if exp.fract().is_zero() {
                i64::try_from(exp)
                    .ok()
                    .and_then(|e| powi(d, e))
                    .map(|r| Item::Dec(r.normalize()))
            } else if d < Decimal::ZERO {
                None
            } else {
                from_f64(f.powf(f64::try_from(exp).unwrap_or(f64::NAN)))
            }
        }
        _ => None,
    })
}

/// Exact integer power of a decimal (no f64 rounding for `2.5.power(2)`).
pub(super) fn powi(base: Decimal, exp: i64) -> Option<Decimal> {
    let mut result = Decimal::ONE;
    for _ in 0..exp.unsigned_abs() {
        result = result.checked_mul(base)?;
    }
    if exp < 0 {
        Decimal::ONE.checked_div(result)
    } else {
        Some(result)
    }
}
