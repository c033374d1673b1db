//! FHIRPath engine over plain `serde_json::Value` (no FHIR type model).
//!
//! Owns the whole pipeline: [`Expr::parse`] tokenises, parses (Pratt) and
//! resolves function names once, reporting errors with line and column;
//! [`Expr::evaluate`] then runs the compiled tree against any number of
//! inputs, borrowing nodes of the input rather than copying them. Without a
//! model, types come only from what FHIR JSON itself says: `resourceType`,
//! the JSON kind of a primitive, and the suffix of a choice element
//! (`valueQuantity` is a `Quantity`).
//!
//! Layout: `lexer` (tokens) → `parser` (tree, semantic checks) → `ast`;
//! `eval` walks the tree, `functions` holds the function library and
//! `value` the runtime items with equality and ordering.

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;
mod value;

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use serde_json::Value;

pub use value::{Collection, Item, Node, TKind, Temporal};

/// A host function: receives the focus collection and the evaluated
/// argument collections, returns the result collection.
pub type HostFunction =
    Arc<dyn Fn(&[Value], &[Vec<Value>]) -> Result<Vec<Value>, EvalError> + Send + Sync>;

/// A compiled FHIRPath expression: parse once, evaluate many times.
#[derive(Debug, Clone)]
pub struct Expr {
    ast: ast::Ast,
    source: Arc<str>,
}

impl Expr {
    /// Parses and checks `src`. Every function must be a built-in one; use
    /// [`Expr::parse_with_functions`] when the host adds its own.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        Expr::parse_with_functions(src, &[])
    }

    /// Parses `src`, also accepting calls to the named host functions (which
    /// must then be registered in the [`Env`] used to evaluate). Calls to any
    /// other unknown function are rejected here, with their position.
    pub fn parse_with_functions(src: &str, host_functions: &[&str]) -> Result<Expr, ParseError> {
        let ast = parser::parse(src, host_functions)?;
        Ok(Expr {
            ast,
            source: src.into(),
        })
    }

    /// The source text this expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `%variables` the expression reads that the environment must
    /// supply: every one but the constants FHIRPath defines (`%resource`,
    /// `%context`, `%sct`, `%vs-…`, …). In order of appearance, repeated.
    pub fn variables(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.ast.walk(&mut |node| {
            if let ast::Ast::Var(name) = node
                && !eval::is_builtin_variable(name)
            {
                names.push(name.to_string());
            }
        });
        names
    }

    /// For each call of the host function `function`, its first argument
    /// when that is a string literal (`lookup('clinician_role')`), else
    /// `None`.
    pub fn host_calls(&self, function: &str) -> Vec<Option<String>> {
        let mut calls = Vec::new();
        self.ast.walk(&mut |node| {
            if let ast::Ast::Call(call) = node
                && matches!(&call.func, ast::CallKind::Host(name) if name.as_ref() == function)
            {
                calls.push(match call.args.first() {
                    Some(ast::Ast::Literal(Item::Str(s))) => Some(s.to_string()),
                    _ => None,
                });
            }
        });
        calls
    }

    /// Evaluates against `input` (the focus and `%context`); results as JSON
    /// values (FHIR JSON primitives, dates as strings).
    pub fn evaluate(&self, input: &Value, env: &Env<'_>) -> Result<Vec<Value>, EvalError> {
        let items = self.evaluate_items(std::slice::from_ref(&Item::node(input)), env)?;
        Ok(items.iter().map(Item::to_json).collect())
    }

    /// Evaluates against a focus collection without converting the result:
    /// items borrow from `focus` and `env`, so nothing is copied. This keeps
    /// choice-type information on the focus (e.g. the `Period` of
    /// `effectivePeriod`) that a bare `&Value` would lose.
    pub fn evaluate_items<'v>(
        &self,
        focus: &[Item<'v>],
        env: &'v Env<'v>,
    ) -> Result<Collection<'v>, EvalError> {
        eval::evaluate(&self.ast, focus, env)
    }
}

/// A syntax or semantic error found while compiling, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset into the source.
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..offset].chars().count() + 1;
        ParseError {
            line,
            column,
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// A failure while evaluating (a type error, a non-singleton where one item
/// is required, an unregistered host function, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// What an evaluation may see besides its input: `%resource`, named
/// variables and host functions. Build it once per document and reuse it.
#[derive(Clone, Default)]
pub struct Env<'a> {
    resource: Option<&'a Value>,
    variables: HashMap<String, Vec<Cow<'a, Value>>>,
    functions: HashMap<String, HostFunction>,
    /// The variable [`Env::bind`] added on top of an enclosing environment.
    bound: Option<Bound<'a>>,
}

/// One variable over an enclosing environment, which keeps its own.
#[derive(Clone)]
struct Bound<'a> {
    name: &'a str,
    values: Vec<Cow<'a, Value>>,
    outer: &'a Env<'a>,
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("resource", &self.resource.is_some())
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("bound", &self.bound.as_ref().map(|b| b.name))
            .finish()
    }
}

impl<'a> Env<'a> {
    pub fn new() -> Self {
        Env::default()
    }

    /// Sets `%resource` / `%rootResource`; `resolve()` searches it for the
    /// enclosing Bundle and contained resources. Defaults to the input.
    pub fn with_resource(mut self, resource: &'a Value) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Defines `%name`.
    pub fn with_variable(mut self, name: &str, value: Vec<Value>) -> Self {
        let value = value.into_iter().map(Cow::Owned).collect();
        self.variables.insert(name.to_owned(), value);
        self
    }

    /// An environment that is this one plus `%name`. The values may borrow
    /// from the input or from this environment's own variables (results of
    /// evaluating against it), so a template binding a part of the input to
    /// a name refers to it rather than copying it.
    pub fn bind(&'a self, name: &'a str, values: Vec<Cow<'a, Value>>) -> Env<'a> {
        Env {
            resource: self.resource,
            variables: HashMap::new(),
            functions: HashMap::new(),
            bound: Some(Bound {
                name,
                values,
                outer: self,
            }),
        }
    }

    /// Registers a host function `name(...)`; expressions calling it must be
    /// compiled with [`Expr::parse_with_functions`].
    pub fn with_function(mut self, name: &str, f: HostFunction) -> Self {
        self.functions.insert(name.to_owned(), f);
        self
    }

    pub(crate) fn resource(&self) -> Option<&'a Value> {
        self.resource
    }

    /// The innermost definition of `%name`.
    pub(crate) fn variable(&self, name: &str) -> Option<&[Cow<'a, Value>]> {
        if let Some(values) = self.variables.get(name) {
            return Some(values);
        }
        let bound = self.bound.as_ref()?;
        if bound.name == name {
            Some(&bound.values)
        } else {
            bound.outer.variable(name)
        }
    }

    pub(crate) fn function(&self, name: &str) -> Option<&HostFunction> {
        self.functions
            .get(name)
            .or_else(|| self.bound.as_ref()?.outer.function(name))
    }
}

#[cfg(test)]
mod tests;
