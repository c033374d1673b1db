//! The function library: the name/arity table the parser checks calls
//! against, and the implementations. Functions whose arguments are
//! expressions over each item (`where`, `select`, `all`, `exists`, `repeat`,
//! `aggregate`, `iif`) evaluate them lazily; the others take their
//! arguments evaluated once, against `$this`.

use std::{ptr, str::FromStr, sync::Arc};

use chrono::{Datelike, Local, Timelike};
use regex::Regex;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::{
    EvalError,
    ast::{Call, CallKind},
    eval::{
        Evaluator, Result, Scope, children, contains_item, is_type, navigate, singleton, to_bool,
        type_name, union,
    },
    value::{
        Collection, Item, Prec, Prim, TKind, Temporal, calendar_unit, json_number, prim_to_string,
    },
};

pub(crate) struct FuncDef {
    pub name: &'static str,
    pub func: Func,
    pub min_args: usize,
    pub max_args: usize,
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal)),* $(,)?) => {
        /// Built-in functions, resolved by name at parse time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant),* }

        static FUNCTIONS: &[FuncDef] = &[
            $(FuncDef { name: $name, func: Func::$variant, min_args: $min, max_args: $max }),*
        ];
    };
}

functions! {
    Empty = "empty"(0, 0), Exists = "exists"(0, 1), All = "all"(1, 1),
    AllTrue = "allTrue"(0, 0), AnyTrue = "anyTrue"(0, 0), AllFalse = "allFalse"(0, 0), AnyFalse = "anyFalse"(0, 0),
    SubsetOf = "subsetOf"(1, 1), SupersetOf = "supersetOf"(1, 1), Count = "count"(0, 0),
    Distinct = "distinct"(0, 0), IsDistinct = "isDistinct"(0, 0),
    Where = "where"(1, 1), Select = "select"(1, 1), Repeat = "repeat"(1, 1), OfType = "ofType"(1, 1),
    Single = "single"(0, 0), First = "first"(0, 0), Last = "last"(0, 0), Tail = "tail"(0, 0),
    Skip = "skip"(1, 1), Take = "take"(1, 1), Intersect = "intersect"(1, 1), Exclude = "exclude"(1, 1),
    Union = "union"(1, 1), Combine = "combine"(1, 1), Iif = "iif"(2, 3), Not = "not"(0, 0),
    Is = "is"(1, 1), As = "as"(1, 1), Type = "type"(0, 0), Aggregate = "aggregate"(1, 2), Trace = "trace"(1, 2),
    ToBoolean = "toBoolean"(0, 0), ConvertsToBoolean = "convertsToBoolean"(0, 0),
    ToInteger = "toInteger"(0, 0), ConvertsToInteger = "convertsToInteger"(0, 0),
    ToDecimal = "toDecimal"(0, 0), ConvertsToDecimal = "convertsToDecimal"(0, 0),
    ToString = "toString"(0, 0), ConvertsToString = "convertsToString"(0, 0),
    ToDate = "toDate"(0, 0), ConvertsToDate = "convertsToDate"(0, 0),
    ToDateTime = "toDateTime"(0, 0), ConvertsToDateTime = "convertsToDateTime"(0, 0),
    ToTime = "toTime"(0, 0), ConvertsToTime = "convertsToTime"(0, 0),
    ToQuantity = "toQuantity"(0, 1), ConvertsToQuantity = "convertsToQuantity"(0, 1),
    IndexOf = "indexOf"(1, 1), Substring = "substring"(1, 2), StartsWith = "startsWith"(1, 1),
    EndsWith = "endsWith"(1, 1), Contains = "contains"(1, 1), Upper = "upper"(0, 0), Lower = "lower"(0, 0),
    Replace = "replace"(2, 2), Matches = "matches"(1, 1), ReplaceMatches = "replaceMatches"(2, 2),
    Length = "length"(0, 0), ToChars = "toChars"(0, 0), Split = "split"(1, 1), Join = "join"(0, 1),
    Trim = "trim"(0, 0), Escape = "escape"(1, 1), Unescape = "unescape"(1, 1),
    Abs = "abs"(0, 0), Ceiling = "ceiling"(0, 0), Exp = "exp"(0, 0), Floor = "floor"(0, 0), Ln = "ln"(0, 0),
    Log = "log"(1, 1), Power = "power"(1, 1), Round = "round"(0, 1), Sqrt = "sqrt"(0, 0), Truncate = "truncate"(0, 0),
    Children = "children"(0, 0), Descendants = "descendants"(0, 0),
    Now = "now"(0, 0), Today = "today"(0, 0), TimeOfDay = "timeOfDay"(0, 0),
    Extension = "extension"(1, 1), HasValue = "hasValue"(0, 0), GetValue = "getValue"(0, 0),
    Resolve = "resolve"(0, 0),
}

pub(crate) fn lookup(name: &str) -> Option<&'static FuncDef> {
    FUNCTIONS.iter().find(|d| d.name == name)
}

pub(crate) fn def(func: Func) -> &'static FuncDef {
    FUNCTIONS
        .iter()
        .find(|d| d.func == func)
        .expect("every Func is in the table")
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EvalError::new(msg))
}

fn bools<'v>(b: bool) -> Collection<'v> {
    vec![Item::Bool(b)]
}

pub(crate) fn call<'v>(
    ev: &Evaluator<'v, '_>,
    call: &Call,
    scope: &Scope<'_, 'v>,
) -> Result<Collection<'v>> {
    let input: Collection<'v> = match &call.target {
        Some(t) => ev.eval(t, scope)?,
        None => scope.this.to_vec(),
    };
    let func = match &call.func {
        CallKind::Host(name) => return host(ev, name, call, scope, &input),
        CallKind::Builtin(f) => *f,
    };
    let name = def(func).name;
    // Per-item evaluation of an argument, with `$this` and `$index` bound.
    let per_item = |arg: usize, i: usize, item: &Item<'v>| -> Result<Collection<'v>> {
        let this = std::slice::from_ref(item);
        ev.eval(
            &call.args[arg],
            &Scope {
                this,
                index: Some(i),
                total: None,
            },
        )
    };
    match func {
        Func::Where => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                if to_bool(&per_item(0, i, item)?, "where criteria")? == Some(true) {
                    out.push(item.clone());
                }
            }
            return Ok(out);
        }
        Func::Select => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(per_item(0, i, item)?);
            }
            return Ok(out);
        }
        Func::All => {
            for (i, item) in input.iter().enumerate() {
                if to_bool(&per_item(0, i, item)?, "all criteria")? != Some(true) {
                    return Ok(bools(false));
                }
            }
            return Ok(bools(true));
        }
        Func::Exists => {
            if call.args.is_empty() {
                return Ok(bools(!input.is_empty()));
            }
            for (i, item) in input.iter().enumerate() {
                if to_bool(&per_item(0, i, item)?, "exists criteria")? == Some(true) {
                    return Ok(bools(true));
                }
            }
            return Ok(bools(false));
        }
        Func::Repeat => {
            let mut out: Collection<'v> = Vec::new();
            let mut queue = input;
            while !queue.is_empty() {
                let mut next = Vec::new();
                for (i, item) in queue.iter().enumerate() {
                    for found in per_item(0, i, item)? {
                        if !out.iter().any(|o| same_item(o, &found)) {
                            out.push(found.clone());
                            next.push(found);
                        }
                    }
                }
                queue = next;
            }
            return Ok(out);
        }
        Func::Aggregate => {
            let mut total = match call.args.get(1) {
                Some(init) => ev.eval(init, scope)?,
                None => Vec::new(),
            };
            for (i, item) in input.iter().enumerate() {
                total = ev.eval(
                    &call.args[0],
                    &Scope {
                        this: std::slice::from_ref(item),
                        index: Some(i),
                        total: Some(&total),
                    },
                )?;
            }
            return Ok(total);
        }
        Func::Iif => {
            // With a target the input is the scope of the branches.
            let inner = Scope {
                this: if call.target.is_some() {
                    &input
                } else {
                    scope.this
                },
                index: scope.index,
                total: scope.total,
            };
            if call.target.is_some() && input.len() > 1 {
                return err("iif() expects at most one input item");
            }
            let cond = to_bool(&ev.eval(&call.args[0], &inner)?, "iif criterion")?;
            return match (cond, call.args.get(2)) {
                (Some(true), _) => ev.eval(&call.args[1], &inner),
                (_, Some(otherwise)) => ev.eval(otherwise, &inner),
                _ => Ok(Vec::new()),
            };
        }
        Func::Trace => {
            // Tracing is a no-op here (no logging of patient data), but the
            // projection is still evaluated so errors surface.
            if call.args.len() > 1 {
                for (i, item) in input.iter().enumerate() {
                    per_item(1, i, item)?;
                }
            }
            return Ok(input);
        }
        Func::OfType | Func::As | Func::Is => {
            let spec = call
                .type_arg
                .as_ref()
                .expect("parser stores the type argument");
            return Ok(match func {
                Func::Is => match singleton(&input, "is()")? {
                    None => Vec::new(),
                    Some(item) => bools(is_type(item, spec)),
                },
                _ => input.into_iter().filter(|i| is_type(i, spec)).collect(),
            });
        }
        _ => {}
    }

    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(ev.eval(a, scope)?);
    }
    let arg_str = |i: usize| -> Result<Option<String>> {
        let Some(arg) = args.get(i) else {
            return Ok(None);
        };
        match singleton(arg, name)? {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(s) => Ok(Some(s.to_owned())),
                None => err(format!("{name}() expects a string argument")),
            },
        }
    };
    let arg_int = |i: usize| -> Result<Option<i64>> {
        let Some(arg) = args.get(i) else {
            return Ok(None);
        };
        match singleton(arg, name)? {
            None => Ok(None),
            Some(item) => match item.as_int() {
                Some(n) => Ok(Some(n)),
                None => err(format!("{name}() expects an integer argument")),
            },
        }
    };

    Ok(match func {
        Func::Empty => bools(input.is_empty()),
        Func::Count => vec![Item::Int(input.len() as i64)],
        Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
            let mut values = Vec::with_capacity(input.len());
            for item in &input {
                match item.as_bool() {
                    Some(b) => values.push(b),
                    None => return err(format!("{name}() expects Booleans")),
                }
            }
            bools(match func {
                Func::AllTrue => values.iter().all(|b| *b),
                Func::AnyTrue => values.iter().any(|b| *b),
                Func::AllFalse => values.iter().all(|b| !*b),
                _ => values.iter().any(|b| !*b),
            })
        }
        Func::SubsetOf => bools(input.iter().all(|i| contains_item(&args[0], i))),
        Func::SupersetOf => bools(args[0].iter().all(|i| contains_item(&input, i))),
        Func::Distinct => union(input, Vec::new()),
        Func::IsDistinct => {
            let n = input.len();
            bools(union(input, Vec::new()).len() == n)
        }
        Func::Single => singleton(&input, "single()")?
            .cloned()
            .into_iter()
            .collect(),
        Func::First => input.into_iter().next().into_iter().collect(),
        Func::Last => input.into_iter().last().into_iter().collect(),
        Func::Tail => input.into_iter().skip(1).collect(),
        Func::Skip => match arg_int(0)? {
            None => Vec::new(),
            Some(n) => input.into_iter().skip(n.max(0) as usize).collect(),
        },
        Func::Take => match arg_int(0)? {
            None => Vec::new(),
            Some(n) => input.into_iter().take(n.max(0) as usize).collect(),
        },
        Func::Intersect => {
            let mut out: Collection<'v> = Vec::new();
            for item in input {
                if contains_item(&args[0], &item) && !contains_item(&out, &item) {
                    out.push(item);
                }
            }
            out
        }
        Func::Exclude => input
            .into_iter()
            .filter(|i| !contains_item(&args[0], i))
            .collect(),
        Func::Union => union(input, args.swap_remove(0)),
        Func::Combine => {
            let mut out = input;
            out.extend(args.swap_remove(0));
            out
        }
        Func::Not => match singleton(&input, "not()")? {
            None => Vec::new(),
            // Integers convert to Boolean (0 is false), as `toBoolean()` does.
            Some(item) => bools(
                !item
                    .as_bool()
                    .unwrap_or_else(|| item.as_int().is_none_or(|i| i != 0)),
            ),
        },
        Func::Type => input
            .iter()
            .map(|i| {
                let (ns, n) = type_name(i);
                Item::Type(ns, n)
            })
            .collect(),
        Func::ToBoolean
        | Func::ToInteger
        | Func::ToDecimal
        | Func::ToString
        | Func::ToDate
        | Func::ToDateTime
        | Func::ToTime
        | Func::ToQuantity => match singleton(&input, name)? {
            None => Vec::new(),
            Some(item) => convert(func, item).into_iter().collect(),
        },
        Func::ConvertsToBoolean
        | Func::ConvertsToInteger
        | Func::ConvertsToDecimal
        | Func::ConvertsToString
        | Func::ConvertsToDate
        | Func::ConvertsToDateTime
        | Func::ConvertsToTime
        | Func::ConvertsToQuantity => match singleton(&input, name)? {
            None => Vec::new(),
            Some(item) => {
                let target = match func {
                    Func::ConvertsToBoolean => Func::ToBoolean,
                    Func::ConvertsToInteger => Func::ToInteger,
                    Func::ConvertsToDecimal => Func::ToDecimal,
                    Func::ConvertsToString => Func::ToString,
                    Func::ConvertsToDate => Func::ToDate,
                    Func::ConvertsToDateTime => Func::ToDateTime,
                    Func::ConvertsToTime => Func::ToTime,
                    _ => Func::ToQuantity,
                };
                bools(convert(target, item).is_some())
            }
        },
        Func::IndexOf
        | Func::Substring
        | Func::StartsWith
        | Func::EndsWith
        | Func::Contains
        | Func::Upper
        | Func::Lower
        | Func::Replace
        | Func::Matches
        | Func::ReplaceMatches
        | Func::Length
        | Func::ToChars
        | Func::Split
        | Func::Trim
        | Func::Escape
        | Func::Unescape => {
            let Some(item) = singleton(&input, name)? else {
                return Ok(Vec::new());
            };
            let Some(s) = item.as_str() else {
                return err(format!("{name}() expects a string input"));
            };
            string_function(func, s, call.regex.as_ref(), &arg_str, &arg_int)?
        }
        Func::Join => {
            let sep = if args.is_empty() {
                Some(String::new())
            } else {
                arg_str(0)?
            };
            let Some(sep) = sep else {
                return Ok(Vec::new());
            };
            // An empty input joins to nothing, not to "" (as fhirpath.js and
            // fhirpathpy do): mappings rely on an absent value vanishing.
            if input.is_empty() {
                return Ok(Vec::new());
            }
            let mut parts = Vec::with_capacity(input.len());
            for item in &input {
                match item.as_str() {
                    Some(s) => parts.push(s),
                    None => return err("join() expects strings"),
                }
            }
            vec![Item::Str(parts.join(&sep).into())]
        }
        Func::Abs
        | Func::Ceiling
        | Func::Exp
        | Func::Floor
        | Func::Ln
        | Func::Log
        | Func::Power
        | Func::Round
        | Func::Sqrt
        | Func::Truncate => {
            let Some(item) = singleton(&input, name)? else {
                return Ok(Vec::new());
            };
            let arg = match args.first() {
                Some(a) => match singleton(a, name)? {
                    None => return Ok(Vec::new()),
                    Some(a) => Some(a.prim()),
                },
                None => None,
            };
            math(func, item.prim(), arg)?.into_iter().collect()
        }
        Func::Children => {
            let mut out = Vec::new();
            for item in &input {
                children(item, &mut out);
            }
            out
        }
        Func::Descendants => {
            let mut out = Vec::new();
            let mut frontier = input;
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for item in &frontier {
                    children(item, &mut next);
                }
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        Func::Now => {
            let now = Local::now();
            let mut t = clock_temporal(TKind::DateTime, &now);
            t.tz = Some(now.offset().local_minus_utc() / 60);
            vec![Item::Temporal(t)]
        }
        Func::Today => vec![Item::Temporal(today_temporal(TKind::Date))],
        Func::TimeOfDay => vec![Item::Temporal(clock_temporal(TKind::Time, &Local::now()))],
        Func::Extension => {
            let Some(url) = arg_str(0)? else {
                return Ok(Vec::new());
            };
            let mut exts = Vec::new();
            for item in &input {
                navigate(item, "extension", &mut exts);
            }
            exts.into_iter()
                .filter(|e| {
                    e.as_object()
                        .and_then(|o| o.get("url"))
                        .and_then(Value::as_str)
                        == Some(url.as_str())
                })
                .collect()
        }
        Func::HasValue => bools(matches!(input.as_slice(), [one] if has_value(one))),
        Func::GetValue => match input.as_slice() {
            [one] if has_value(one) => input,
            _ => Vec::new(),
        },
        Func::Resolve => {
            let mut out = Vec::new();
            for item in &input {
                if let Some(found) = resolve(ev.root, item) {
                    out.push(Item::node(found));
                }
            }
            out
        }
        Func::Where
        | Func::Select
        | Func::All
        | Func::Exists
        | Func::Repeat
        | Func::Aggregate
        | Func::Iif
        | Func::Trace
        | Func::OfType
        | Func::As
        | Func::Is => unreachable!("handled above"),
    })
}

/// Identity for `repeat()`: the same JSON node, or equal System values.
fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) => {
            ptr::eq(x.value, y.value)
                && x.ext.map(|e| e as *const _) == y.ext.map(|e| e as *const _)
        }
        (Item::Node(_), _) | (_, Item::Node(_)) => false,
        _ => super::value::equals(a, b) == Some(true),
    }
}

fn has_value(item: &Item<'_>) -> bool {
    match item {
        Item::Node(n) => !matches!(n.value, Value::Null | Value::Object(_) | Value::Array(_)),
        Item::Type(..) => false,
        _ => true,
    }
}

/// Today's date with `now`'s time of day, to the millisecond.
fn clock_temporal(kind: TKind, now: &chrono::DateTime<Local>) -> Temporal {
    let mut t = today_temporal(kind);
    t.hour = now.hour();
    t.minute = now.minute();
    t.second = now.second();
    t.millis = now.nanosecond() / 1_000_000 % 1000;
    t.frac_digits = 3;
    t.prec = Prec::Second;
    t
}

fn today_temporal(kind: TKind) -> Temporal {
    let now = Local::now();
    let mut t = Temporal::parse("2000-01-01", TKind::Date).expect("constant date parses");
    t.kind = kind;
    t.year = now.year();
    t.month = now.month();
    t.day = now.day();
    t
}

fn host<'v>(
    ev: &Evaluator<'v, '_>,
    name: &str,
    call: &Call,
    scope: &Scope<'_, 'v>,
    input: &[Item<'v>],
) -> Result<Collection<'v>> {
    let Some(f) = ev.env.function(name) else {
        return err(format!(
            "function '{name}' is not registered in this environment"
        ));
    };
    let focus: Vec<Value> = input.iter().map(Item::to_json).collect();
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(
            ev.eval(a, scope)?
                .iter()
                .map(Item::to_json)
                .collect::<Vec<_>>(),
        );
    }
    let mut out = Vec::new();
    for v in f(&focus, &args)? {
        out.push(match v {
            Value::Null => continue,
            Value::Bool(b) => Item::Bool(b),
            Value::String(s) => Item::Str(s.into()),
            Value::Number(n) => match json_number(&n) {
                Prim::Int(i) => Item::Int(i),
                Prim::Dec(d) => Item::Dec(d),
                _ => return err(format!("{name}() returned a number out of range")),
            },
            // Results must be primitives: items borrow from the input, and a
            // host result has nothing to borrow from.
            Value::Array(_) | Value::Object(_) => {
                return err(format!("{name}() must return primitive values"));
            }
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Conversions.

fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_dec(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Decimal::from_str(s.strip_prefix('+').unwrap_or(s)).ok()
}

fn convert<'v>(to: Func, item: &Item<'v>) -> Option<Item<'v>> {
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

fn date_part(t: Temporal) -> Temporal {
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
fn parse_quantity<'v>(s: &str) -> Option<Item<'v>> {
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

// ---------------------------------------------------------------------------
// Strings.

type ArgStr<'a> = dyn Fn(usize) -> Result<Option<String>> + 'a;
type ArgInt<'a> = dyn Fn(usize) -> Result<Option<i64>> + 'a;

fn string_function<'v>(
    func: Func,
    s: &str,
    regex: Option<&Regex>,
    arg_str: &ArgStr<'_>,
    arg_int: &ArgInt<'_>,
) -> Result<Collection<'v>> {
    let text = |t: String| vec![Item::Str(t.into())];
    let dynamic_regex = |i: usize| -> Result<Option<Regex>> {
        match arg_str(i)? {
            None => Ok(None),
            Some(p) => Regex::new(&p)
                .map(Some)
                .map_err(|e| EvalError::new(format!("invalid regular expression: {e}"))),
        }
    };
    Ok(match func {
        Func::IndexOf => match arg_str(0)? {
            None => Vec::new(),
            Some(sub) => vec![Item::Int(match s.find(&sub) {
                Some(byte) => s[..byte].chars().count() as i64,
                None => -1,
            })],
        },
        Func::Substring => {
            let Some(start) = arg_int(0)? else {
                return Ok(Vec::new());
            };
            let len = s.chars().count() as i64;
            if start < 0 || start >= len {
                return Ok(Vec::new());
            }
            let take = match arg_int(1)? {
                Some(n) => n.max(0),
                None => len,
            };
            text(s.chars().skip(start as usize).take(take as usize).collect())
        }
        Func::StartsWith => arg_str(0)?
            .map(|p| bools(s.starts_with(&p)))
            .unwrap_or_default(),
        Func::EndsWith => arg_str(0)?
            .map(|p| bools(s.ends_with(&p)))
            .unwrap_or_default(),
        Func::Contains => arg_str(0)?
            .map(|p| bools(s.contains(&p)))
            .unwrap_or_default(),
        Func::Upper => text(s.to_uppercase()),
        Func::Lower => text(s.to_lowercase()),
        Func::Replace => match (arg_str(0)?, arg_str(1)?) {
            (Some(pat), Some(rep)) => text(s.replace(&pat, &rep)),
            _ => Vec::new(),
        },
        Func::Matches => {
            let re = match regex {
                Some(r) => r.clone(),
                None => match dynamic_regex(0)? {
                    Some(r) => r,
                    None => return Ok(Vec::new()),
                },
            };
            bools(re.is_match(s))
        }
        Func::ReplaceMatches => {
            let re = match regex {
                Some(r) => r.clone(),
                None => match dynamic_regex(0)? {
                    Some(r) => r,
                    None => return Ok(Vec::new()),
                },
            };
            match arg_str(1)? {
                Some(rep) => text(re.replace_all(s, rep.as_str()).into_owned()),
                None => Vec::new(),
            }
        }
        Func::Length => vec![Item::Int(s.chars().count() as i64)],
        Func::ToChars => s.chars().map(|c| Item::Str(c.to_string().into())).collect(),
        Func::Split => match arg_str(0)? {
            None => Vec::new(),
            Some(sep) if sep.is_empty() => {
                s.chars().map(|c| Item::Str(c.to_string().into())).collect()
            }
            Some(sep) => s.split(sep.as_str()).map(|p| Item::Str(p.into())).collect(),
        },
        Func::Trim => text(s.trim().to_owned()),
        Func::Escape | Func::Unescape => {
            let Some(format) = arg_str(0)? else {
                return Ok(Vec::new());
            };
            let escape = func == Func::Escape;
            match (format.as_str(), escape) {
                ("json", true) => {
                    let quoted =
                        serde_json::to_string(s).map_err(|e| EvalError::new(e.to_string()))?;
                    text(quoted[1..quoted.len() - 1].to_owned())
                }
                ("json", false) => match serde_json::from_str::<String>(&format!("\"{s}\"")) {
                    Ok(u) => text(u),
                    Err(_) => Vec::new(),
                },
                ("html", true) => text(
                    s.replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('"', "&quot;")
                        .replace('\'', "&#39;"),
                ),
                ("html", false) => text(
                    s.replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&quot;", "\"")
                        .replace("&#39;", "'")
                        .replace("&amp;", "&"),
                ),
                (other, _) => return err(format!("unsupported escape format '{other}'")),
            }
        }
        _ => unreachable!("only string functions are dispatched here"),
    })
}

// ---------------------------------------------------------------------------
// Math.

fn math<'v>(func: Func, x: Prim<'_>, arg: Option<Prim<'_>>) -> Result<Option<Item<'v>>> {
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
fn powi(base: Decimal, exp: i64) -> Option<Decimal> {
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

// ---------------------------------------------------------------------------
// resolve()

/// Finds the resource a reference (a `Reference` object or a reference
/// string) points at: a contained resource for `#id`, otherwise an entry of
/// the enclosing Bundle by `fullUrl` (also `urn:uuid:`) or by `Type/id`.
fn resolve<'v>(root: Option<&'v Value>, item: &Item<'v>) -> Option<&'v Value> {
    let root = root?;
    let Item::Node(node) = item else {
        return item
            .as_str()
            .and_then(|r| resolve_reference(root, &[root], r));
    };
    let reference = match node.value {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("reference")?.as_str()?,
        _ => return None,
    };
    // The resources enclosing the reference, outermost first.
    let mut chain = Vec::new();
    if find_enclosing(root, node.value, &mut chain) {
        chain.reverse();
    } else {
        chain = vec![root];
    }
    resolve_reference(root, &chain, reference)
}

fn is_resource(v: &Value) -> bool {
    v.get("resourceType").is_some_and(Value::is_string)
}

/// Whether `target` is (by address) `at` or inside it; if so, the resources
/// on the way down to it are appended to `chain`, innermost first. Only the
/// target's ancestors are checked for being resources, on the way back up,
/// so the search itself is a plain walk.
fn find_enclosing<'v>(at: &'v Value, target: &Value, chain: &mut Vec<&'v Value>) -> bool {
    if ptr::eq(at, target) {
        return true;
    }
    let found = match at {
        Value::Object(o) => o.values().any(|v| find_enclosing(v, target, chain)),
        Value::Array(a) => a.iter().any(|v| find_enclosing(v, target, chain)),
        _ => false,
    };
    if found && is_resource(at) {
        chain.push(at);
    }
    found
}

fn resolve_reference<'v>(
    root: &'v Value,
    chain: &[&'v Value],
    reference: &str,
) -> Option<&'v Value> {
    if let Some(id) = reference.strip_prefix('#') {
        for res in chain.iter().rev() {
            if id.is_empty() && res.get("contained").is_some() {
                return Some(res);
            }
            let contained = res.get("contained").and_then(Value::as_array);
            if let Some(found) = contained
                .into_iter()
                .flatten()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            {
                return Some(found);
            }
        }
        return None;
    }
    let type_id = type_and_id(reference);
    for bundle in chain
        .iter()
        .rev()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Bundle"))
    {
        let entries = bundle.get("entry").and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            if entry.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                return entry.get("resource");
            }
        }
        if let Some((ty, id)) = type_id {
            for entry in entries.into_iter().flatten() {
                let res = entry.get("resource");
                let matches = res.is_some_and(|r| {
                    r.get("resourceType").and_then(Value::as_str) == Some(ty)
                        && r.get("id").and_then(Value::as_str) == Some(id)
                });
                // An absolute reference must also agree with the entry's base.
                let base_ok = !reference.contains("://")
                    || entry
                        .get("fullUrl")
                        .and_then(Value::as_str)
                        .is_some_and(|f| {
                            f.ends_with(&format!("{ty}/{id}"))
                                && reference.starts_with(&f[..f.len() - ty.len() - id.len() - 1])
                        });
                if matches && base_ok {
                    return res;
                }
            }
        }
    }
    // A relative reference to the root resource itself.
    let (ty, id) = type_id?;
    (root.get("resourceType").and_then(Value::as_str) == Some(ty)
        && root.get("id").and_then(Value::as_str) == Some(id))
    .then_some(root)
}

/// `Type/id` at the end of a reference, ignoring a `/_history/version` tail.
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with("urn:") {
        return None;
    }
    let path = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let ty = parts.next()?;
    (ty.starts_with(|c: char| c.is_ascii_uppercase()) && !id.is_empty()).then_some((ty, id))
}
