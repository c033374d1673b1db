//! The compiled expression tree. Built once by the parser (function names
//! already resolved and arities checked), then only read by the evaluator,
//! so it is `Send + Sync` and shared freely between threads.

use std::sync::Arc;

use regex::Regex;

use super::{functions::Func, value::Item};

#[derive(Debug, Clone)]
pub(crate) enum Ast {
    /// `{}`
    Empty,
    Literal(Item<'static>),
    /// An identifier at the start of a path: a member of `$this`, or a
    /// resource type name that selects `$this` when it matches.
    Member(Arc<str>),
    /// `target.name`
    Child(Box<Ast>, Arc<str>),
    This,
    Index,
    Total,
    Var(Arc<str>),
    Call(Box<Call>),
    Indexer(Box<Ast>, Box<Ast>),
    Negate(Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    Is(Box<Ast>, TypeSpec),
    As(Box<Ast>, TypeSpec),
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// `None` when the function is called without a target (`where(...)` at
    /// the start of an expression): its input is then `$this`.
    pub target: Option<Ast>,
    pub func: CallKind,
    pub args: Vec<Ast>,
    /// For `is`, `as` and `ofType`.
    pub type_arg: Option<TypeSpec>,
    /// Regex compiled at parse time when the pattern is a string literal.
    pub regex: Option<Regex>,
}

#[derive(Debug, Clone)]
pub(crate) enum CallKind {
    Builtin(Func),
    /// A function the host registers in `Env::with_function`.
    Host(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type name as written: `Integer`, `System.Integer`, `FHIR.Patient`.
#[derive(Debug, Clone)]
pub(crate) struct TypeSpec {
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
}

impl Ast {
    /// Calls `visit` on this node and every node below it, parents first.
    pub(crate) fn walk(&self, visit: &mut impl FnMut(&Ast)) {
        visit(self);
        match self {
            Ast::Empty
            | Ast::Literal(_)
            | Ast::Member(_)
            | Ast::This
            | Ast::Index
            | Ast::Total
            | Ast::Var(_) => {}
            Ast::Child(target, _)
            | Ast::Negate(target)
            | Ast::Is(target, _)
            | Ast::As(target, _) => target.walk(visit),
            Ast::Indexer(left, right) | Ast::Binary(_, left, right) => {
                left.walk(visit);
                right.walk(visit);
            }
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    target.walk(visit);
                }
                for arg in &call.args {
                    arg.walk(visit);
                }
            }
        }
    }
}
