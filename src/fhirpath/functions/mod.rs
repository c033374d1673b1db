//! The function library: the name/arity table the parser checks calls
//! against, and the implementations. Functions whose arguments are
//! expressions over each item (`where`, `select`, `all`, `exists`, `repeat`,
//! `aggregate`, `iif`) evaluate them lazily; the others take their
//! arguments evaluated once, against `$this`. The longer families live in
//! their own files, by section of the specification.

mod convert;
mod math;
mod resolve;
mod strings;

use self::{convert::convert, math::math, resolve::resolve, strings::string_function};

use std::ptr;

use chrono::{Datelike, Local, Timelike};

use serde_json::Value;

use super::{
    EvalError,
    ast::{Call, CallKind},
    eval::{
        Evaluator, Result, Scope, children, contains_item, is_type, navigate, singleton, to_bool,
        type_name, union,
    },
    value::{Collection, Item, Prec, Prim, TKind, Temporal, json_number},
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
