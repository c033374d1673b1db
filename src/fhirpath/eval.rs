//! Tree-walking evaluator: navigation (including choice elements and the
//! `_name` siblings of primitives), operators with FHIRPath's empty-collection
//! and three-valued-logic rules, and type tests without a FHIR model.

use std::{cmp::Ordering, sync::Arc};

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{
    Env, EvalError,
    ast::{Ast, BinOp, TypeSpec},
    functions,
    value::{self, Collection, Item, Node, Prim, TKind},
};

pub(crate) type Result<T> = std::result::Result<T, EvalError>;

/// Stands in for the value of a primitive that only has extensions.
static NULL: Value = Value::Null;

pub(crate) fn evaluate<'v>(
    ast: &Ast,
    focus: &[Item<'v>],
    env: &'v Env<'v>,
) -> Result<Collection<'v>> {
    let context_node = focus.first().and_then(|i| match i {
        Item::Node(n) => Some(n.value),
        _ => None,
    });
    let ev = Evaluator {
        env,
        root: env.resource().or(context_node),
        context: focus,
    };
    let scope = Scope {
        this: focus,
        index: None,
        total: None,
    };
    ev.eval(ast, &scope)
}

/// Per-evaluation state that does not change while walking the tree.
pub(crate) struct Evaluator<'v, 'c> {
    pub env: &'v Env<'v>,
    /// `%resource`: where `resolve()` looks for Bundles and contained resources.
    pub root: Option<&'v Value>,
    /// `%context`.
    pub context: &'c [Item<'v>],
}

/// What `$this`, `$index` and `$total` mean at this point of the tree.
pub(crate) struct Scope<'a, 'v> {
    pub this: &'a [Item<'v>],
    pub index: Option<usize>,
    pub total: Option<&'a [Item<'v>]>,
}

pub(crate) fn singleton<'a, 'v>(c: &'a [Item<'v>], what: &str) -> Result<Option<&'a Item<'v>>> {
    match c {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(EvalError::new(format!(
            "{what} expects a single item, got a collection of {}",
            c.len()
        ))),
    }
}

/// Boolean singleton evaluation: empty is unknown, one Boolean is itself,
/// any other single item counts as true, more than one item is an error.
pub(crate) fn to_bool(c: &[Item<'_>], what: &str) -> Result<Option<bool>> {
    Ok(singleton(c, what)?.map(|item| item.as_bool().unwrap_or(true)))
}

fn bool_result<'v>(b: Option<bool>) -> Collection<'v> {
    b.map(|b| vec![Item::Bool(b)]).unwrap_or_default()
}

impl<'v> Evaluator<'v, '_> {
    pub(crate) fn eval(&self, ast: &Ast, scope: &Scope<'_, 'v>) -> Result<Collection<'v>> {
        Ok(match ast {
            Ast::Empty => Vec::new(),
            Ast::Literal(item) => vec![item.clone()],
            Ast::Member(name) => {
                let mut out = Vec::new();
                for item in scope.this {
                    // `Patient.name`: a leading type name selects a matching resource.
                    if name.starts_with(|c: char| c.is_ascii_uppercase())
                        && item
                            .as_object()
                            .and_then(|o| o.get("resourceType"))
                            .and_then(Value::as_str)
                            == Some(name.as_ref())
                    {
                        out.push(item.clone());
                    } else {
                        navigate(item, name, &mut out);
                    }
                }
                out
            }
            Ast::Child(target, name) => {
                let input = self.eval(target, scope)?;
                let mut out = Vec::new();
                for item in &input {
                    navigate(item, name, &mut out);
                }
                out
            }
            Ast::This => scope.this.to_vec(),
            Ast::Index => match scope.index {
                Some(i) => vec![Item::Int(i as i64)],
                None => Vec::new(),
            },
            Ast::Total => scope.total.map(<[_]>::to_vec).unwrap_or_default(),
            Ast::Var(name) => self.variable(name)?,
            Ast::Call(call) => functions::call(self, call, scope)?,
            Ast::Indexer(target, index) => {
                let input = self.eval(target, scope)?;
                let index = self.eval(index, scope)?;
                match singleton(&index, "indexer")?.map(Item::as_int) {
                    None => Vec::new(),
                    Some(None) => return Err(EvalError::new("an index must be an Integer")),
                    Some(Some(i)) => usize::try_from(i)
                        .ok()
                        .and_then(|i| input.into_iter().nth(i))
                        .into_iter()
                        .collect(),
                }
            }
            Ast::Negate(operand) => {
                let input = self.eval(operand, scope)?;
                match singleton(&input, "unary minus")? {
                    None => Vec::new(),
                    Some(item) => vec![match item.prim() {
                        Prim::Int(i) => Item::Int(-i),
                        Prim::Dec(d) => Item::Dec(-d),
                        Prim::Quantity(v, u) => Item::Quantity(-v, u.into()),
                        _ => return Err(EvalError::new("unary minus needs a number or quantity")),
                    }],
                }
            }
            Ast::Binary(op, lhs, rhs) => self.binary(*op, lhs, rhs, scope)?,
            Ast::Is(operand, spec) => {
                let input = self.eval(operand, scope)?;
                match singleton(&input, "is")? {
                    None => Vec::new(),
                    Some(item) => vec![Item::Bool(is_type(item, spec))],
                }
            }
            Ast::As(operand, spec) => {
                let input = self.eval(operand, scope)?;
                input.into_iter().filter(|i| is_type(i, spec)).collect()
            }
        })
    }

    fn variable(&self, name: &str) -> Result<Collection<'v>> {
        match builtin_variable(name) {
            Some(Builtin::Root) => Ok(self.root.map(Item::node).into_iter().collect()),
            Some(Builtin::Context) => Ok(self.context.to_vec()),
            Some(Builtin::Url(url)) => Ok(vec![Item::Str(url.into())]),
            None => match self.env.variable(name) {
                Some(values) => Ok(values.iter().map(|v| Item::node(v.as_ref())).collect()),
                None => Err(EvalError::new(format!("unknown variable '%{name}'"))),
            },
        }
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: &Ast,
        rhs: &Ast,
        scope: &Scope<'_, 'v>,
    ) -> Result<Collection<'v>> {
        use BinOp::*;
        if matches!(op, And | Or | Xor | Implies) {
            let a = to_bool(&self.eval(lhs, scope)?, "a logical operator")?;
            // Short-circuit where the left side alone decides the result.
            match (op, a) {
                (And, Some(false)) => return Ok(bool_result(Some(false))),
                (Or, Some(true)) => return Ok(bool_result(Some(true))),
                (Implies, Some(false)) => return Ok(bool_result(Some(true))),
                _ => {}
            }
            let b = to_bool(&self.eval(rhs, scope)?, "a logical operator")?;
            return Ok(bool_result(logic(op, a, b)));
        }
        let a = self.eval(lhs, scope)?;
        let b = self.eval(rhs, scope)?;
        Ok(match op {
            Eq => bool_result(collection_equals(&a, &b)),
            Ne => bool_result(collection_equals(&a, &b).map(|x| !x)),
            Equiv => bool_result(Some(collection_equivalent(&a, &b))),
            NotEquiv => bool_result(Some(!collection_equivalent(&a, &b))),
            Union => union(a, b),
            In => membership(&a, &b, "in")?,
            Contains => membership(&b, &a, "contains")?,
            Lt | Gt | Le | Ge => {
                let (Some(x), Some(y)) = (
                    singleton(&a, "a comparison")?,
                    singleton(&b, "a comparison")?,
                ) else {
                    return Ok(Vec::new());
                };
                let ord = value::compare(x, y).map_err(EvalError::new)?;
                bool_result(ord.map(|o| match op {
                    Lt => o == Ordering::Less,
                    Gt => o == Ordering::Greater,
                    Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            Concat => {
                let text = |c: &[Item<'_>]| -> Result<String> {
                    match singleton(c, "&")? {
                        None => Ok(String::new()),
                        Some(i) => i
                            .as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| EvalError::new("& needs strings")),
                    }
                };
                vec![Item::Str((text(&a)? + &text(&b)?).into())]
            }
            Add | Sub | Mul | Div | IntDiv | Mod => {
                let (Some(x), Some(y)) =
                    (singleton(&a, "arithmetic")?, singleton(&b, "arithmetic")?)
                else {
                    return Ok(Vec::new());
                };
                arithmetic(op, x, y)?.into_iter().collect()
            }
            And | Or | Xor | Implies => unreachable!("handled above"),
        })
    }
}

fn logic(op: BinOp, a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match op {
        BinOp::And => match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BinOp::Or => match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BinOp::Xor => Some(a? != b?),
        _ => match (a, b) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn collection_equals(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut result = Some(true);
    for (x, y) in a.iter().zip(b) {
        match value::equals(x, y) {
            Some(true) => {}
            Some(false) => return Some(false),
            None => result = None,
        }
    }
    result
}

fn collection_equivalent(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Order does not matter for equivalence: match each item once.
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = b
            .iter()
            .enumerate()
            .position(|(i, y)| !used[i] && value::equivalent(x, y));
        if let Some(i) = found {
            used[i] = true;
        }
        found.is_some()
    })
}

pub(crate) fn contains_item(c: &[Item<'_>], x: &Item<'_>) -> bool {
    c.iter().any(|y| value::equals(x, y) == Some(true))
}

pub(crate) fn union<'v>(a: Collection<'v>, b: Collection<'v>) -> Collection<'v> {
    let mut out: Collection<'v> = Vec::with_capacity(a.len() + b.len());
    for item in a.into_iter().chain(b) {
        if !contains_item(&out, &item) {
            out.push(item);
        }
    }
    out
}

fn membership<'v>(
    item: &[Item<'v>],
    collection: &[Item<'v>],
    what: &str,
) -> Result<Collection<'v>> {
    Ok(match singleton(item, what)? {
        None => Vec::new(),
        Some(x) => vec![Item::Bool(contains_item(collection, x))],
    })
}

fn dec(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

/// `+ - * / div mod` on two single items; `Ok(None)` is empty (division by
/// zero, overflow), `Err` a type error.
fn arithmetic<'v>(op: BinOp, x: &Item<'v>, y: &Item<'v>) -> Result<Option<Item<'v>>> {
    use BinOp::*;
    let (px, py) = (x.prim(), y.prim());
    let type_error = || {
        Err(EvalError::new(format!(
            "operator {op:?} cannot be applied to {} and {}",
            type_name(x).1,
            type_name(y).1
        )))
    };
    Ok(match (&px, &py) {
        (Prim::Int(a), Prim::Int(b)) => match op {
            Add => a.checked_add(*b).map(Item::Int),
            Sub => a.checked_sub(*b).map(Item::Int),
            Mul => a.checked_mul(*b).map(Item::Int),
            Div => divide(Decimal::from(*a), Decimal::from(*b)),
            IntDiv => a.checked_div(*b).map(Item::Int),
            Mod => a.checked_rem(*b).map(Item::Int),
            _ => return type_error(),
        },
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let (Some(a), Some(b)) = (dec(&px), dec(&py)) else {
                return type_error();
            };
            match op {
                Add => a.checked_add(b).map(Item::Dec),
                Sub => a.checked_sub(b).map(Item::Dec),
                Mul => a.checked_mul(b).map(Item::Dec),
                Div => divide(a, b),
                IntDiv => a
                    .checked_div(b)
                    .and_then(|q| i64::try_from(q.trunc()).ok())
                    .map(Item::Int),
                Mod => a.checked_rem(b).map(Item::Dec),
                _ => return type_error(),
            }
        }
        (Prim::Str(a), Prim::Str(b)) if op == Add => Some(Item::Str(format!("{a}{b}").into())),
        (Prim::Temporal(t), Prim::Quantity(v, u)) if matches!(op, Add | Sub) => {
            let v = if op == Sub { -*v } else { *v };
            match t.add(v, u) {
                Some(r) => Some(Item::Temporal(r)),
                None => return Err(EvalError::new(format!("cannot add '{u}' to a date/time"))),
            }
        }
        (Prim::Quantity(a, ua), Prim::Quantity(b, ub)) if ua == ub && matches!(op, Add | Sub) => {
            let v = if op == Add {
                a.checked_add(*b)
            } else {
                a.checked_sub(*b)
            };
            v.map(|v| Item::Quantity(v, (*ua).into()))
        }
        (Prim::Quantity(a, u), Prim::Int(_) | Prim::Dec(_)) if matches!(op, Mul | Div) => {
            let b = dec(&py).unwrap_or_default();
            let v = if op == Mul {
                a.checked_mul(b)
            } else {
                a.checked_div(b)
            };
            v.map(|v| Item::Quantity(v, (*u).into()))
        }
        _ => return type_error(),
    })
}

fn divide<'v>(a: Decimal, b: Decimal) -> Option<Item<'v>> {
    // Eight decimal places, as the reference implementation: FHIRPath does
    // not fix the precision of an inexact quotient.
    a.checked_div(b)
        .map(|q| Item::Dec(q.round_dp(8).normalize()))
}

// ---------------------------------------------------------------------------
// Navigation.

/// Type suffixes a choice element (`value[x]`) may carry in FHIR R4.
const CHOICE_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Dosage",
    "Meta",
];

/// Appends the children called `name` of `item` to `out`.
pub(crate) fn navigate<'v>(item: &Item<'v>, name: &str, out: &mut Vec<Item<'v>>) {
    let node = match item {
        Item::Node(n) => n,
        Item::Type(ns, n) => {
            match name {
                "namespace" => out.push(Item::Str((*ns).into())),
                "name" => out.push(Item::Str(n.clone())),
                _ => {}
            }
            return;
        }
        _ => return,
    };
    let obj = match node.value {
        Value::Object(o) => o,
        // A primitive's `id` and `extension` live in its `_name` sibling.
        _ => match node.ext {
            Some(Value::Object(e)) => e,
            _ => return,
        },
    };
    if let Some(v) = obj.get(name) {
        push_values(v, ext_sibling(obj, name, v), None, out);
        return;
    }
    let mut found = false;
    for (key, v) in obj {
        if let Some(suffix) = key.strip_prefix(name)
            && suffix.starts_with(|c: char| c.is_ascii_uppercase())
            && CHOICE_TYPES.contains(&suffix)
        {
            push_values(v, ext_sibling(obj, key, v), Some(suffix), out);
            found = true;
        }
    }
    if !found {
        // A primitive with only extensions: `"_birthDate": {...}` and no value.
        let ext = obj
            .iter()
            .find(|(k, _)| k.strip_prefix('_') == Some(name))
            .map(|(_, v)| v);
        if let Some(ext) = ext {
            push_values(&NULL, Some(ext), None, out);
        }
    }
}

fn is_primitive(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|e| !e.is_object()),
        Value::Object(_) => false,
        _ => true,
    }
}

fn ext_sibling<'v>(obj: &'v Map<String, Value>, key: &str, v: &Value) -> Option<&'v Value> {
    // Only primitives have `_name` siblings; skip the lookup for objects.
    if !is_primitive(v) {
        return None;
    }
    obj.iter()
        .find(|(k, _)| k.strip_prefix('_') == Some(key))
        .map(|(_, v)| v)
}

fn push_values<'v>(
    v: &'v Value,
    ext: Option<&'v Value>,
    hint: Option<&'v str>,
    out: &mut Vec<Item<'v>>,
) {
    match v {
        Value::Array(items) => {
            let exts = ext.and_then(Value::as_array);
            for (i, e) in items.iter().enumerate() {
                let ext = exts.and_then(|x| x.get(i)).filter(|x| !x.is_null());
                if e.is_null() && ext.is_none() {
                    continue;
                }
                out.push(Item::Node(Node {
                    value: e,
                    ext,
                    hint,
                }));
            }
            // `_given` may be longer than `given` when trailing values are absent.
            if let Some(exts) = exts {
                for x in exts.iter().skip(items.len()).filter(|x| !x.is_null()) {
                    out.push(Item::Node(Node {
                        value: &NULL,
                        ext: Some(x),
                        hint,
                    }));
                }
            }
        }
        Value::Null if ext.is_none() => {}
        _ => out.push(Item::Node(Node {
            value: v,
            ext,
            hint,
        })),
    }
}

/// Every child node of `item` (for `children()` and `descendants()`).
pub(crate) fn children<'v>(item: &Item<'v>, out: &mut Vec<Item<'v>>) {
    let Item::Node(node) = item else { return };
    let obj = match node.value {
        Value::Object(o) => o,
        _ => match node.ext {
            Some(Value::Object(e)) => e,
            _ => return,
        },
    };
    for (key, v) in obj {
        if key == "resourceType" || key.starts_with('_') {
            continue;
        }
        push_values(v, ext_sibling(obj, key, v), None, out);
    }
    // Primitives that only have extensions are still children.
    for (key, ext) in obj {
        if let Some(name) = key.strip_prefix('_')
            && !obj.contains_key(name)
        {
            push_values(&NULL, Some(ext), None, out);
        }
    }
}

// ---------------------------------------------------------------------------
// Types without a model.

/// FHIR primitive type names, which a choice suffix names with a capital.
const FHIR_PRIMITIVES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// Types whose JSON form is a string: an untyped JSON string may be any.
const STRING_TYPES: &[&str] = &[
    "string",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "markdown",
    "oid",
    "uuid",
    "base64Binary",
];

/// Namespace and name of an item's type, as far as FHIR JSON tells us.
pub(crate) fn type_name(item: &Item<'_>) -> (&'static str, Arc<str>) {
    let system = |n: &str| ("System", Arc::<str>::from(n));
    match item {
        Item::Bool(_) => system("Boolean"),
        Item::Int(_) => system("Integer"),
        Item::Dec(_) => system("Decimal"),
        Item::Str(_) => system("String"),
        Item::Temporal(t) => system(match t.kind {
            TKind::Date => "Date",
            TKind::DateTime => "DateTime",
            TKind::Time => "Time",
        }),
        Item::Quantity(..) => system("Quantity"),
        Item::Type(..) => system("TypeInfo"),
        Item::Node(n) => {
            if let Some(hint) = n.hint {
                let mut lower = hint.to_string();
                lower[..1].make_ascii_lowercase();
                if FHIR_PRIMITIVES.contains(&lower.as_str()) {
                    return ("FHIR", lower.into());
                }
                return ("FHIR", hint.into());
            }
            let name = match n.value {
                Value::Bool(_) => "boolean",
                Value::Number(num) if num.is_i64() || num.is_u64() => "integer",
                Value::Number(_) => "decimal",
                Value::String(_) | Value::Null => "string",
                Value::Object(o) => match o.get("resourceType").and_then(Value::as_str) {
                    Some(rt) => return ("FHIR", rt.into()),
                    None => "Element",
                },
                Value::Array(_) => "Element",
            };
            ("FHIR", name.into())
        }
    }
}

/// `is`: exact type match, plus the few supertypes that need no model
/// (`Resource`, `DomainResource`) and the string-based FHIR primitives an
/// untyped JSON string may be.
pub(crate) fn is_type(item: &Item<'_>, spec: &TypeSpec) -> bool {
    let (ns, name) = type_name(item);
    if let Some(want_ns) = &spec.namespace
        && want_ns.as_ref() != ns
    {
        return false;
    }
    let want = spec.name.as_ref();
    if want == name.as_ref() {
        return true;
    }
    let Item::Node(n) = item else { return false };
    if n.hint.is_some() {
        return false;
    }
    match n.value {
        Value::Object(o) if o.contains_key("resourceType") => {
            want == "Resource"
                || (want == "DomainResource"
                    && !matches!(name.as_ref(), "Bundle" | "Parameters" | "Binary"))
        }
        Value::String(s) => {
            STRING_TYPES.contains(&want)
                || match want {
                    "date" => value::Temporal::parse(s, TKind::Date).is_some(),
                    "dateTime" => value::Temporal::parse(s, TKind::DateTime).is_some(),
                    "instant" => {
                        value::Temporal::parse(s, TKind::DateTime).is_some_and(|t| t.tz.is_some())
                    }
                    "time" => value::Temporal::parse(s, TKind::Time).is_some(),
                    _ => false,
                }
        }
        Value::Number(num) if num.is_u64() || num.is_i64() => {
            matches!(want, "decimal" | "unsignedInt" | "positiveInt")
        }
        _ => false,
    }
}

/// A variable FHIRPath itself defines, which no environment supplies.
enum Builtin {
    /// `%resource`, `%rootResource`.
    Root,
    /// `%context`.
    Context,
    /// A constant URL: `%ucum`, `%sct`, `%loinc`, `%vs-*`, `%ext-*`.
    Url(String),
}

/// The one table of FHIRPath's own variables: evaluation reads it, and so
/// does the compile-time check of variable names
/// ([`is_builtin_variable`]), so the two cannot disagree.
fn builtin_variable(name: &str) -> Option<Builtin> {
    Some(match name {
        "resource" | "rootResource" => Builtin::Root,
        "context" => Builtin::Context,
        "ucum" => Builtin::Url("http://unitsofmeasure.org".into()),
        "sct" => Builtin::Url("http://snomed.info/sct".into()),
        "loinc" => Builtin::Url("http://loinc.org".into()),
        _ => {
            if let Some(vs) = name.strip_prefix("vs-") {
                Builtin::Url(format!("http://hl7.org/fhir/ValueSet/{vs}"))
            } else if let Some(ext) = name.strip_prefix("ext-") {
                Builtin::Url(format!("http://hl7.org/fhir/StructureDefinition/{ext}"))
            } else {
                return None;
            }
        }
    })
}

/// Whether `name` is one of the variables FHIRPath itself defines.
pub(crate) fn is_builtin_variable(name: &str) -> bool {
    builtin_variable(name).is_some()
}
