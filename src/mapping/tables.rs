//! Code tables: a provider's own codes for SNOMED CT concepts, priorities
//! and the like, kept in the mapping file where integrators edit them, and
//! used from expressions as `codes.lookup('table')`.

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;
use serde_json::Value;

use crate::fhirpath::{EvalError, HostFunction};

/// The name expressions call.
pub const LOOKUP: &str = "lookup";

/// One table as written in a mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// For a code not in `codes`. Without it, an unknown code refuses the
    /// referral rather than sending a guess.
    #[serde(default)]
    pub default: Option<Value>,
    pub codes: BTreeMap<String, Value>,
}

/// All of a mapping's tables.
#[derive(Debug, Clone, Default)]
pub struct Tables(pub BTreeMap<String, Table>);

impl Tables {
    /// `lookup(table)`: each code of the focus mapped through the table; an
    /// empty focus gives an empty result.
    pub fn lookup_function(self: &Arc<Self>) -> HostFunction {
        let tables = Arc::clone(self);
        Arc::new(move |focus: &[Value], args: &[Vec<Value>]| {
            let name = match args {
                [arg] => match arg.as_slice() {
                    [Value::String(name)] => name,
                    _ => return Err(EvalError::new("lookup() takes a table name as a string")),
                },
                _ => {
                    return Err(EvalError::new(
                        "lookup() takes one argument: the table name",
                    ));
                }
            };
            let table = tables
                .0
                .get(name)
                .ok_or_else(|| EvalError::new(format!("no code table '{name}' in this mapping")))?;
            focus
                .iter()
                .map(|code| {
                    let key = match code {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    table
                        .codes
                        .get(&key)
                        .or(table.default.as_ref())
                        .cloned()
                        .ok_or_else(|| {
                            EvalError::new(format!(
                                "code '{key}' has no entry in table '{name}' and the table has no default"
                            ))
                        })
                })
                .collect()
        })
    }
}

/// What is wrong with the `lookup()` calls of one expression: a table this
/// mapping does not have, or a name that is not written as a quoted string
/// (so it cannot be checked before a referral arrives).
pub fn check_lookups(source: &str, tables: &BTreeMap<String, Table>) -> Vec<String> {
    let Ok(expr) = crate::fhirpath::Expr::parse_with_functions(source, &[LOOKUP]) else {
        return Vec::new(); // reported where it is compiled
    };
    let known = || {
        if tables.is_empty() {
            "it has none".to_owned()
        } else {
            format!(
                "its tables: {}",
                tables.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    expr.host_calls(LOOKUP)
        .into_iter()
        .filter_map(|table| match table {
            Some(name) if tables.contains_key(&name) => None,
            Some(name) => Some(format!(
                "lookup('{name}'): this mapping has no code table '{name}' ({}); add it under `tables:` or correct the name",
                known()
            )),
            None => Some(format!(
                "lookup() must name its table as a quoted string, e.g. lookup('table') ({})",
                known()
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tables() -> Arc<Tables> {
        Arc::new(Tables(BTreeMap::from([
            (
                "role".to_owned(),
                Table {
                    default: Some(json!("OTHER")),
                    codes: BTreeMap::from([("62247001".into(), json!("GP"))]),
                },
            ),
            (
                "strict".to_owned(),
                Table {
                    default: None,
                    codes: BTreeMap::from([("1".into(), json!(3))]),
                },
            ),
        ])))
    }

    #[test]
    fn codes_map_through_the_table_or_its_default() {
        let f = tables().lookup_function();
        let out = f(&[json!("62247001"), json!("999")], &[vec![json!("role")]]).unwrap();
        assert_eq!(out, [json!("GP"), json!("OTHER")]);
        assert_eq!(f(&[], &[vec![json!("role")]]).unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn an_unknown_code_without_a_default_is_an_error_naming_code_and_table() {
        let f = tables().lookup_function();
        assert_eq!(
            f(&[json!(1)], &[vec![json!("strict")]]).unwrap(),
            [json!(3)]
        );
        let err = f(&[json!("2")], &[vec![json!("strict")]]).unwrap_err();
        assert!(
            err.message.contains("'2'") && err.message.contains("'strict'"),
            "{err}"
        );
        assert!(f(&[json!("1")], &[vec![json!("nope")]]).is_err());
    }
}
