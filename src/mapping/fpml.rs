//! The FHIRPath Mapping Language (FPML): a JSON/YAML template shaped like the
//! output, where
//!
//! - `"{{ expr }}"` is the first result of a FHIRPath expression (a string
//!   that is only the placeholder keeps the result's JSON type; otherwise the
//!   results are interpolated as text), `"{{+ expr +}}"` the same but `null`
//!   instead of nothing when there is no result;
//! - `"{[ expr ]}"` is all the results;
//! - `{ "{{ expr }}": template }` renders the template once per result, with
//!   that result as the focus;
//! - `{% assign %}`, `{% if expr %}` / `{% else %}`, `{% for item in expr %}`
//!   (or `{% for index, item in expr %}`) and `{% merge %}` add variables
//!   (`%name`), conditions, iteration and merging;
//! - empty results vanish together with the keys, arrays and objects that
//!   held them (`null` is kept), and nested arrays are flattened.
//!
//! Behaviour follows the reference implementation (PyPI `fpml` 1.0.0) with
//! one deliberate difference: values produced by expressions are never
//! themselves read as templates (the reference re-processes them, so a
//! patient's name containing `{{ … }}` would be evaluated). Interpolated
//! booleans are written `true`/`false` (FHIRPath's `toString()`), not
//! Python's `True`/`False`.
//!
//! Templates compile once (every expression parsed up front, errors
//! collected with their place in the template) and render many times.

use std::{
    borrow::Cow,
    sync::{Arc, LazyLock},
};

use regex::Regex;
use serde_json::{Map, Value};

use crate::fhirpath::{Collection, Env, Expr, Item};

/// A compiled template.
#[derive(Clone)]
pub struct Template {
    root: Node,
    /// `(template path, expression)` of every expression, to say where a
    /// field of the output is read from.
    expressions: Vec<(String, String)>,
}

/// A problem in a template: found when compiling it, or while rendering
/// (an expression that cannot be evaluated, a directive whose result has
/// the wrong shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Where in the template: `case.opened_by.professional.name`.
    pub path: String,
    /// The FHIRPath expression at fault, if any.
    pub expression: Option<String>,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        match &self.expression {
            Some(expr) => write!(f, "{at}: `{expr}`: {}", self.message),
            None => write!(f, "{at}: {}", self.message),
        }
    }
}

#[derive(Clone)]
enum Node {
    /// Numbers, booleans, null, and strings without placeholders.
    Literal(Value),
    /// `"{[ expr ]}"`
    All(Located),
    /// `"{{ expr }}"` alone: the first result, typed.
    First {
        expr: Located,
        null_if_empty: bool,
    },
    /// Text with `{{ }}` placeholders.
    Text {
        parts: Vec<Part>,
        null_if_empty: bool,
    },
    Array(Vec<Node>),
    Object(Box<ObjectNode>),
}

#[derive(Clone)]
enum Part {
    Text(String),
    Expr(Located),
}

/// An expression with its place in the template, for error messages.
#[derive(Clone)]
struct Located {
    expr: Arc<Expr>,
    path: Arc<str>,
}

#[derive(Clone)]
struct ObjectNode {
    assigns: Vec<(String, Node)>,
    kind: ObjectKind,
}

#[derive(Clone)]
enum ObjectKind {
    Plain(Vec<(String, Node)>),
    /// `{ "{{ expr }}": body }`
    Each {
        source: Located,
        body: Node,
    },
    /// `{% merge %}`: the other keys, then each value's object merged over.
    Merge {
        rest: Vec<(String, Node)>,
        values: Vec<Node>,
    },
    /// `{% for [index,] item in expr %}`
    For {
        index: Option<String>,
        item: String,
        source: Located,
        body: Node,
    },
    /// `{% if %}` with optional `{% else %}`, and other keys the chosen
    /// branch's object is merged into.
    If {
        condition: Located,
        then: Node,
        otherwise: Option<Node>,
        rest: Option<Vec<(String, Node)>>,
    },
}

static ALL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{\[\s*([\s\S]+?)\s*\]\}").unwrap());
static SINGLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{(\+?)\s*([\s\S]+?)\s*\+?\}\}").unwrap());
static EACH_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{\{\s*(.+?)\s*\}\}").unwrap());
static FOR_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\{%\s*for\s+(?:(\w+?)\s*,\s*)?(\w+?)\s+in\s+(.+?)\s*%\}").unwrap()
});
static IF_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{%\s*if\s+(.+?)\s*%\}").unwrap());
static ELSE_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{%\s*else\s*%\}").unwrap());
static MERGE_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{%\s*merge\s*%\}").unwrap());
static ASSIGN_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\{%\s*assign\s*%\}").unwrap());

struct Compiler<'h> {
    errors: Vec<TemplateError>,
    host_functions: &'h [&'h str],
    expressions: Vec<(String, String)>,
    /// In a strict compile, the `%variables` defined where the compiler is
    /// (given from outside, then `{% assign %}` and `{% for %}` names), and
    /// unknown `{% … %}` directives are errors; `None` compiles as the
    /// reference does (an unknown directive is a literal key, a variable
    /// is looked up when rendering).
    scope: Option<Vec<String>>,
}

/// The directives, as an integrator would write them, for error messages.
const DIRECTIVES: &str =
    "{% assign %}, {% if EXPR %}, {% else %}, {% for ITEM in EXPR %}, {% merge %}";

impl Template {
    /// Compile a template, reporting every problem. `host_functions` names
    /// the functions the host will register in the [`Env`] (such as code
    /// table lookups); any other unknown function is an error here.
    pub fn compile(
        template: &Value,
        host_functions: &[&str],
    ) -> Result<Template, Vec<TemplateError>> {
        Template::compile_in(template, host_functions, None)
    }

    /// Compile strictly, as for a mapping file: besides what
    /// [`Template::compile`] reports, every `%variable` must be one of
    /// `variables` or defined by an enclosing `{% assign %}` or
    /// `{% for %}`, and every `{% … %}` key must be a known directive (the
    /// reference would send a misspelt `{% iff %}` as a literal key).
    pub fn compile_strict(
        template: &Value,
        host_functions: &[&str],
        variables: &[&str],
    ) -> Result<Template, Vec<TemplateError>> {
        let scope = variables.iter().map(|v| (*v).to_owned()).collect();
        Template::compile_in(template, host_functions, Some(scope))
    }

    fn compile_in(
        template: &Value,
        host_functions: &[&str],
        scope: Option<Vec<String>>,
    ) -> Result<Template, Vec<TemplateError>> {
        let mut compiler = Compiler {
            errors: Vec::new(),
            host_functions,
            expressions: Vec::new(),
            scope,
        };
        let root = compiler.node(template, "");
        if compiler.errors.is_empty() {
            Ok(Template {
                root,
                expressions: compiler.expressions,
            })
        } else {
            Err(compiler.errors)
        }
    }

    /// The expression that fills the output field at `path`
    /// (`case.reasons[0].code`), if one does; array indexes are ignored.
    pub fn expression_at(&self, path: &str) -> Option<&str> {
        let strip = |p: &str| {
            let mut out = String::with_capacity(p.len());
            let mut depth = 0;
            for c in p.chars() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ if depth == 0 => out.push(c),
                    _ => {}
                }
            }
            out
        };
        let wanted = strip(path);
        self.expressions
            .iter()
            .find(|(p, _)| strip(p) == wanted)
            .map(|(_, e)| e.as_str())
    }

    /// Every expression of the template, as written.
    pub fn expressions(&self) -> impl Iterator<Item = &str> {
        self.expressions.iter().map(|(_, source)| source.as_str())
    }

    /// Render against `resource`, with the variables and host functions of
    /// `env` (whose `%resource` should be `resource`, for `resolve()`).
    /// `None` when everything vanished.
    pub fn render(&self, resource: &Value, env: &Env<'_>) -> Result<Option<Value>, TemplateError> {
        Renderer.node(&self.root, resource, env)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Compiler<'_> {
    fn expr(&mut self, source: &str, path: &str) -> Option<Located> {
        self.expr_written(source, source, path)
    }

    /// Compile `source`, which the template wrote as `written` (an
    /// `{% if %}` condition is compiled inside `iif(…)`): errors quote what
    /// was written, so that it can be found in the file.
    fn expr_written(&mut self, source: &str, written: &str, path: &str) -> Option<Located> {
        match Expr::parse_with_functions(source, self.host_functions) {
            Ok(expr) => {
                self.check_variables(&expr, written, path);
                self.expressions.push((path.to_owned(), written.to_owned()));
                Some(Located {
                    expr: Arc::new(expr),
                    path: path.into(),
                })
            }
            Err(e) => {
                self.error(path, Some(written), e.to_string());
                None
            }
        }
    }

    /// In a strict compile, every variable `expr` reads must be defined here.
    fn check_variables(&mut self, expr: &Expr, written: &str, path: &str) {
        let Some(scope) = &self.scope else { return };
        let undefined: Vec<String> = expr
            .variables()
            .into_iter()
            .filter(|name| !scope.contains(name))
            .collect();
        for name in undefined {
            let defined = match self.scope.as_deref() {
                Some([]) | None => "none".to_owned(),
                Some(names) => names
                    .iter()
                    .map(|n| format!("%{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            self.error(
                path,
                Some(written),
                format!(
                    "`%{name}` is not defined here (defined here: {defined}); define it with {{% assign %}} in this object or one that encloses it, or correct the name"
                ),
            );
        }
    }

    fn error(&mut self, path: &str, expression: Option<&str>, message: impl Into<String>) {
        self.errors.push(TemplateError {
            path: path.to_owned(),
            expression: expression.map(str::to_owned),
            message: message.into(),
        });
    }

    fn node(&mut self, value: &Value, path: &str) -> Node {
        match value {
            Value::String(text) => self.string(text, path),
            Value::Array(items) => Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.node(item, &format!("{path}[{i}]")))
                    .collect(),
            ),
            Value::Object(map) => self.object(map, path),
            other => Node::Literal(other.clone()),
        }
    }

    fn string(&mut self, text: &str, path: &str) -> Node {
        if let Some(captures) = ALL.captures(text) {
            return match self.expr(&captures[1], path) {
                Some(expr) => Node::All(expr),
                None => Node::Literal(Value::Null),
            };
        }
        let mut parts = Vec::new();
        let mut last = 0;
        let mut null_if_empty = false;
        for captures in SINGLE.captures_iter(text) {
            let whole = captures.get(0).expect("match");
            if whole.start() > last {
                parts.push(Part::Text(text[last..whole.start()].to_owned()));
            }
            // As in the reference, the first placeholder's `+` decides.
            if parts.iter().all(|p| matches!(p, Part::Text(_))) {
                null_if_empty = &captures[1] == "+";
            }
            if let Some(expr) = self.expr(&captures[2], path) {
                parts.push(Part::Expr(expr));
            }
            last = whole.end();
        }
        if parts.is_empty() {
            return Node::Literal(Value::String(text.to_owned()));
        }
        if last < text.len() {
            parts.push(Part::Text(text[last..].to_owned()));
        }
        if let [Part::Expr(expr)] = parts.as_slice() {
            return Node::First {
                expr: expr.clone(),
                null_if_empty,
            };
        }
        Node::Text {
            parts,
            null_if_empty,
        }
    }

    fn object(&mut self, map: &Map<String, Value>, path: &str) -> Node {
        let mut assigns = Vec::new();
        let mut entries: Vec<(&String, &Value)> = Vec::new();
        let outer_scope = self.scope.as_ref().map(Vec::len);
        for (key, value) in map {
            if ASSIGN_KEY.is_match(key) {
                self.assign(value, path, &mut assigns);
            } else {
                self.check_directive(key, path);
                entries.push((key, value));
            }
        }
        let kind = self.object_kind(&entries, path);
        // The object's assigns are visible in it and below it, not beside it.
        if let (Some(scope), Some(len)) = (&mut self.scope, outer_scope) {
            scope.truncate(len);
        }
        Node::Object(Box::new(ObjectNode { assigns, kind }))
    }

    /// In a strict compile, a `{% … %}` key must be one of the directives.
    fn check_directive(&mut self, key: &str, path: &str) {
        if self.scope.is_none() || !key.trim_start().starts_with("{%") {
            return;
        }
        let known = [&*IF_KEY, &*ELSE_KEY, &*FOR_KEY, &*MERGE_KEY, &*ASSIGN_KEY]
            .iter()
            .any(|directive| directive.is_match(key.trim_start()));
        if !known {
            self.error(
                path,
                Some(key),
                format!(
                    "unknown or malformed directive; the directives are {DIRECTIVES} (a key that only looks like one would be sent to the provider as it is)"
                ),
            );
        }
    }

    fn assign(&mut self, value: &Value, path: &str, assigns: &mut Vec<(String, Node)>) {
        let objects: Vec<&Map<String, Value>> = match value {
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            Value::Object(one) if one.len() == 1 => vec![one],
            _ => {
                self.error(
                    path,
                    None,
                    "{% assign %} takes an object with one key, or a list of them",
                );
                return;
            }
        };
        if let Value::Array(items) = value
            && objects.len() != items.len()
        {
            self.error(path, None, "{% assign %} list items must be objects");
        }
        for object in objects {
            if object.len() != 1 {
                self.error(
                    path,
                    None,
                    "each {% assign %} object must have exactly one key",
                );
                continue;
            }
            let (name, template) = object.iter().next().expect("one key");
            let node = self.node(template, &join(path, name));
            if let Some(scope) = &mut self.scope {
                scope.push(name.clone());
            }
            assigns.push((name.clone(), node));
        }
    }

    fn plain(&mut self, entries: &[(&String, &Value)], path: &str) -> Vec<(String, Node)> {
        entries
            .iter()
            .map(|(key, value)| ((*key).clone(), self.node(value, &join(path, key))))
            .collect()
    }

    fn object_kind(&mut self, entries: &[(&String, &Value)], path: &str) -> ObjectKind {
        // The reference checks the directives in this order.
        if let Some((key, body)) = entries.iter().find(|(k, _)| EACH_KEY.is_match(k)) {
            if entries.len() > 1 {
                self.error(path, None, "a {{ expr }} key must be the object's only key");
            }
            let source = &EACH_KEY.captures(key).expect("matched")[1];
            let body = self.node(body, path);
            return match self.expr(source, path) {
                Some(source) => ObjectKind::Each { source, body },
                None => ObjectKind::Plain(Vec::new()),
            };
        }
        if let Some(position) = entries.iter().position(|(k, _)| MERGE_KEY.is_match(k)) {
            let (_, merged) = entries[position];
            let items: Vec<&Value> = match merged {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            let values = items.into_iter().map(|v| self.node(v, path)).collect();
            let rest: Vec<_> = entries
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != position)
                .map(|(_, e)| *e)
                .collect();
            let rest = self.plain(&rest, path);
            return ObjectKind::Merge { rest, values };
        }
        if let Some((key, body)) = entries.iter().find(|(k, _)| FOR_KEY.is_match(k)) {
            if entries.len() > 1 {
                self.error(path, None, "a {% for %} key must be the object's only key");
            }
            let captures = FOR_KEY.captures(key).expect("matched");
            let index = captures.get(1).map(|m| m.as_str().to_owned());
            let item = captures[2].to_owned();
            let outer_scope = self.scope.as_ref().map(Vec::len);
            if let Some(scope) = &mut self.scope {
                scope.push(item.clone());
                scope.extend(index.clone());
            }
            let body = self.node(body, path);
            if let (Some(scope), Some(len)) = (&mut self.scope, outer_scope) {
                scope.truncate(len);
            }
            return match self.expr(&captures[3], path) {
                Some(source) => ObjectKind::For {
                    index,
                    item,
                    source,
                    body,
                },
                None => ObjectKind::Plain(Vec::new()),
            };
        }
        let ifs: Vec<_> = entries.iter().filter(|(k, _)| IF_KEY.is_match(k)).collect();
        let elses: Vec<_> = entries
            .iter()
            .filter(|(k, _)| ELSE_KEY.is_match(k))
            .collect();
        if ifs.len() > 1 {
            self.error(path, None, "{% if %} may appear once per object");
        }
        if elses.len() > 1 {
            self.error(path, None, "{% else %} may appear once per object");
        }
        if !elses.is_empty() && ifs.is_empty() {
            self.error(path, None, "{% else %} needs an {% if %} beside it");
        }
        if let Some((if_key, then)) = ifs.first() {
            let condition = &IF_KEY.captures(if_key).expect("matched")[1];
            let then = self.node(then, path);
            let otherwise = elses.first().map(|(_, v)| self.node(v, path));
            let rest: Vec<_> = entries
                .iter()
                .filter(|(k, _)| !IF_KEY.is_match(k) && !ELSE_KEY.is_match(k))
                .copied()
                .collect();
            let rest = (!rest.is_empty()).then(|| self.plain(&rest, path));
            // `iif` gives FHIRPath truthiness: empty is false.
            return match self.expr_written(
                &format!("iif({condition}, true, false)"),
                condition,
                path,
            ) {
                Some(condition) => ObjectKind::If {
                    condition,
                    then,
                    otherwise,
                    rest,
                },
                None => ObjectKind::Plain(Vec::new()),
            };
        }
        ObjectKind::Plain(self.plain(entries, path))
    }
}

struct Renderer;

type Rendered = Result<Option<Value>, TemplateError>;

impl Renderer {
    /// The results of an expression, borrowing from `focus` and `env`:
    /// only what ends up in the output is copied out of the input.
    fn items<'v>(
        &self,
        located: &Located,
        focus: &'v Value,
        env: &'v Env<'v>,
    ) -> Result<Collection<'v>, TemplateError> {
        located
            .expr
            .evaluate_items(std::slice::from_ref(&Item::node(focus)), env)
            .map_err(|e| TemplateError {
                path: located.path.to_string(),
                expression: Some(located.expr.source().to_owned()),
                message: e.to_string(),
            })
    }

    fn node(&self, node: &Node, focus: &Value, env: &Env<'_>) -> Rendered {
        match node {
            Node::Literal(value) => Ok(Some(value.clone())),
            Node::All(expr) => {
                let items = self.items(expr, focus, env)?;
                Ok(clean(Value::Array(
                    items.iter().map(Item::to_json).collect(),
                )))
            }
            Node::First {
                expr,
                null_if_empty,
            } => match self.items(expr, focus, env)?.first() {
                Some(item) => Ok(clean(item.to_json())),
                None => Ok(null_if_empty.then_some(Value::Null)),
            },
            Node::Text {
                parts,
                null_if_empty,
            } => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => text.push_str(t),
                        Part::Expr(expr) => match self.items(expr, focus, env)?.first() {
                            Some(item) => match item.as_str() {
                                Some(s) => text.push_str(s),
                                None => text.push_str(&as_text(&item.to_json())),
                            },
                            None => return Ok(null_if_empty.then_some(Value::Null)),
                        },
                    }
                }
                Ok(Some(Value::String(text)))
            }
            Node::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.node(item, focus, env)? {
                        Some(Value::Array(inner)) => out.extend(inner),
                        Some(value) => out.push(value),
                        None => {}
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Array(out)))
            }
            Node::Object(object) => self.assigning(&object.assigns, &object.kind, focus, env),
        }
    }

    /// Binds the object's `{% assign %}`s in order, each in a scope over the
    /// ones before (so later ones can use earlier ones), then renders it.
    fn assigning(
        &self,
        assigns: &[(String, Node)],
        kind: &ObjectKind,
        focus: &Value,
        env: &Env<'_>,
    ) -> Rendered {
        match assigns.split_first() {
            None => self.object(kind, focus, env),
            Some(((name, node), rest)) => {
                let values = self.binding(node, focus, env)?;
                self.assigning(rest, kind, focus, &env.bind(name, values))
            }
        }
    }

    /// What `{% assign %}` of `node` binds: the collection it renders to (a
    /// list is its items, nothing or null is empty). Parts of the input are
    /// borrowed when they would render unchanged, which is the usual case:
    /// binding `%patient` to a contained Patient copies nothing.
    fn binding<'v>(
        &self,
        node: &Node,
        focus: &'v Value,
        env: &'v Env<'v>,
    ) -> Result<Vec<Cow<'v, Value>>, TemplateError> {
        match node {
            Node::First { expr, .. } => match self.items(expr, focus, env)?.first() {
                None => Ok(Vec::new()),
                Some(Item::Node(n)) if is_clean(n.value) && !is_list_or_null(n.value) => {
                    Ok(vec![Cow::Borrowed(n.value)])
                }
                Some(item) => Ok(collection(clean(item.to_json()))),
            },
            Node::All(expr) => {
                let items = self.items(expr, focus, env)?;
                let borrowed: Option<Vec<_>> = items
                    .iter()
                    .map(|item| match item {
                        Item::Node(n) if is_clean(n.value) && !n.value.is_array() => {
                            Some(Cow::Borrowed(n.value))
                        }
                        _ => None,
                    })
                    .collect();
                match borrowed {
                    Some(values) => Ok(values),
                    None => Ok(collection(clean(Value::Array(
                        items.iter().map(Item::to_json).collect(),
                    )))),
                }
            }
            _ => Ok(collection(self.node(node, focus, env)?)),
        }
    }

    fn object(&self, kind: &ObjectKind, focus: &Value, env: &Env<'_>) -> Rendered {
        match kind {
            ObjectKind::Plain(entries) => self.entries(entries, focus, env),
            ObjectKind::Each { source, body } => {
                let mut out = Vec::new();
                for answer in self.items(source, focus, env)? {
                    let computed;
                    let answer = match answer {
                        Item::Node(n) => n.value,
                        other => {
                            computed = other.to_json();
                            &computed
                        }
                    };
                    match self.node(body, answer, env)? {
                        Some(Value::Array(inner)) => out.extend(inner),
                        Some(value) => out.push(value),
                        None => {}
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Array(out)))
            }
            ObjectKind::For {
                index,
                item,
                source,
                body,
            } => {
                let mut out = Vec::new();
                for (i, answer) in self.items(source, focus, env)?.iter().enumerate() {
                    let answer = match answer {
                        Item::Node(n) => Cow::Borrowed(n.value),
                        other => Cow::Owned(other.to_json()),
                    };
                    let with_item = env.bind(item, vec![answer]);
                    let with_index;
                    let scope = match index {
                        Some(index) => {
                            with_index = with_item.bind(index, vec![Cow::Owned(Value::from(i))]);
                            &with_index
                        }
                        None => &with_item,
                    };
                    match self.node(body, focus, scope)? {
                        Some(Value::Array(items)) => out.extend(items),
                        Some(value) => out.push(value),
                        None => {}
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Array(out)))
            }
            ObjectKind::Merge { rest, values } => {
                let mut merged = match self.entries(rest, focus, env)? {
                    Some(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                for value in values {
                    match self.node(value, focus, env)? {
                        Some(Value::Object(map)) => merged.extend(map),
                        None | Some(Value::Null) => {}
                        Some(_) => {
                            return Err(shape_error(
                                source_path(value),
                                "{% merge %} values must render to objects",
                            ));
                        }
                    }
                }
                Ok((!merged.is_empty()).then_some(Value::Object(merged)))
            }
            ObjectKind::If {
                condition,
                then,
                otherwise,
                rest,
            } => {
                let holds = self
                    .items(condition, focus, env)?
                    .first()
                    .is_some_and(is_true);
                let chosen = if holds {
                    self.node(then, focus, env)?
                } else {
                    match otherwise {
                        Some(node) => self.node(node, focus, env)?,
                        None => None,
                    }
                };
                let Some(rest) = rest else { return Ok(chosen) };
                let mut merged = match self.entries(rest, focus, env)? {
                    Some(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                match chosen {
                    Some(Value::Object(map)) => merged.extend(map),
                    None | Some(Value::Null) => {}
                    Some(_) => {
                        return Err(shape_error(
                            condition.path.to_string(),
                            "an {% if %} beside other keys must render to an object",
                        ));
                    }
                }
                Ok((!merged.is_empty()).then_some(Value::Object(merged)))
            }
        }
    }

    fn entries(&self, entries: &[(String, Node)], focus: &Value, env: &Env<'_>) -> Rendered {
        let mut map = Map::with_capacity(entries.len());
        for (key, node) in entries {
            if let Some(value) = self.node(node, focus, env)? {
                map.insert(key.clone(), value);
            }
        }
        Ok((!map.is_empty()).then_some(Value::Object(map)))
    }
}

/// A rendered value as a collection: a list is its items, nothing or null
/// is empty.
fn collection(value: Option<Value>) -> Vec<Cow<'static, Value>> {
    match value {
        Some(Value::Array(items)) => items.into_iter().map(Cow::Owned).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(value) => vec![Cow::Owned(value)],
    }
}

fn is_list_or_null(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Null)
}

/// Whether an item is the Boolean `true` (System or FHIR).
fn is_true(item: &Item<'_>) -> bool {
    matches!(
        item,
        Item::Bool(true)
            | Item::Node(crate::fhirpath::Node {
                value: Value::Bool(true),
                ..
            })
    )
}

fn source_path(node: &Node) -> String {
    match node {
        Node::All(l) | Node::First { expr: l, .. } => l.path.to_string(),
        _ => String::new(),
    }
}

fn shape_error(path: String, message: &str) -> TemplateError {
    TemplateError {
        path,
        expression: None,
        message: message.to_owned(),
    }
}

/// A value computed by an expression, with empty arrays and objects removed
/// and nested arrays flattened, as template values are; `None` when nothing
/// is left. It is not read as a template.
fn clean(value: Value) -> Option<Value> {
    // FHIR data never holds empty arrays or objects or nested arrays, so
    // most values need no rebuilding: check without allocating first.
    if is_clean(&value) {
        return Some(value);
    }
    match value {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match clean(item) {
                    Some(Value::Array(inner)) => out.extend(inner),
                    Some(v) => out.push(v),
                    None => {}
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Value::Object(map) => {
            let cleaned: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
                .collect();
            (!cleaned.is_empty()).then_some(Value::Object(cleaned))
        }
        other => Some(other),
    }
}

/// Whether [`clean`] would return `value` unchanged.
fn is_clean(value: &Value) -> bool {
    match value {
        Value::Array(items) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|item| !matches!(item, Value::Array(_)) && is_clean(item))
        }
        Value::Object(map) => !map.is_empty() && map.values().all(is_clean),
        _ => true,
    }
}

/// A result as interpolated text.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
