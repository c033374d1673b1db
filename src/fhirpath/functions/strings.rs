//! String manipulation (FHIRPath §5.6).

use regex::Regex;

use super::{Func, bools, err};
use crate::fhirpath::{
    EvalError,
    eval::Result,
    value::{Collection, Item},
};

pub(super) type ArgStr<'a> = dyn Fn(usize) -> Result<Option<String>> + 'a;
pub(super) type ArgInt<'a> = dyn Fn(usize) -> Result<Option<i64>> + 'a;

pub(super) fn string_function<'v>(
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
