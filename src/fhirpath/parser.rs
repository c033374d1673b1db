//! Pratt parser from tokens to [`Ast`]. Also the compile-time checks: every
//! function name is resolved and its argument count checked here, so such
//! mistakes surface with a position before any data is seen.

use std::{str::FromStr, sync::Arc};

use regex::Regex;
use rust_decimal::Decimal;

use super::{
    ParseError,
    ast::{Ast, BinOp, Call, CallKind, TypeSpec},
    functions::{self, Func},
    lexer::{Tok, Token, tokenize},
    value::{Item, Temporal, calendar_unit},
};

// Binding powers, loosest first (FHIRPath §"Operator precedence").
const BP_IMPLIES: u8 = 2;
const BP_OR: u8 = 4;
const BP_AND: u8 = 6;
const BP_MEMBERSHIP: u8 = 8;
const BP_EQUALITY: u8 = 10;
const BP_COMPARE: u8 = 12;
const BP_UNION: u8 = 14;
const BP_TYPE: u8 = 16;
const BP_ADD: u8 = 18;
const BP_MUL: u8 = 20;
const BP_UNARY: u8 = 22;

pub(crate) fn parse(src: &str, host_functions: &[&str]) -> Result<Ast, ParseError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        host_functions,
    };
    let ast = p.expr(0)?;
    let t = p.peek();
    if t.kind != Tok::Eof {
        return Err(p.error_at(t.offset, format!("unexpected {}", describe(&t.kind))));
    }
    Ok(ast)
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    host_functions: &'s [&'s str],
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Number(n) => format!("number '{n}'"),
        Tok::Str(_) => "string".into(),
        Tok::Ident(i) | Tok::Delimited(i) => format!("identifier '{i}'"),
        Tok::DateTime(d) => format!("date/time '@{d}'"),
        Tok::Var(v) => format!("variable '%{v}'"),
        Tok::Special(s) => format!("'${s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Eof => "end of expression".into(),
    }
}

fn infix_op(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Sym(s) => match *s {
            "*" => (BinOp::Mul, BP_MUL),
            "/" => (BinOp::Div, BP_MUL),
            "+" => (BinOp::Add, BP_ADD),
            "-" => (BinOp::Sub, BP_ADD),
            "&" => (BinOp::Concat, BP_ADD),
            "|" => (BinOp::Union, BP_UNION),
            "<" => (BinOp::Lt, BP_COMPARE),
            ">" => (BinOp::Gt, BP_COMPARE),
            "<=" => (BinOp::Le, BP_COMPARE),
            ">=" => (BinOp::Ge, BP_COMPARE),
            "=" => (BinOp::Eq, BP_EQUALITY),
            "!=" => (BinOp::Ne, BP_EQUALITY),
            "~" => (BinOp::Equiv, BP_EQUALITY),
            "!~" => (BinOp::NotEquiv, BP_EQUALITY),
            _ => return None,
        },
        Tok::Ident(w) => match w.as_ref() {
            "div" => (BinOp::IntDiv, BP_MUL),
            "mod" => (BinOp::Mod, BP_MUL),
            "in" => (BinOp::In, BP_MEMBERSHIP),
            "contains" => (BinOp::Contains, BP_MEMBERSHIP),
            "and" => (BinOp::And, BP_AND),
            "or" => (BinOp::Or, BP_OR),
            "xor" => (BinOp::Xor, BP_OR),
            "implies" => (BinOp::Implies, BP_IMPLIES),
            _ => return None,
        },
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Token {
        self.tokens[self.pos].clone()
    }

    fn peek_kind(&self) -> &Tok {
        &self.tokens[self.pos].kind
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.kind != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn error_at(&self, offset: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, offset, msg)
    }

    fn expect(&mut self, sym: &'static str) -> Result<Token, ParseError> {
        let t = self.next();
        if t.kind == Tok::Sym(sym) {
            Ok(t)
        } else {
            Err(self.error_at(
                t.offset,
                format!("expected '{sym}', found {}", describe(&t.kind)),
            ))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Ast, ParseError> {
        let mut lhs = self.prefix()?;
        loop {
            let t = self.peek();
            // Postfix: invocation and indexer bind tightest.
            match &t.kind {
                Tok::Sym(".") => {
                    self.next();
                    lhs = self.invocation(Some(lhs))?;
                    continue;
                }
                Tok::Sym("[") => {
                    self.next();
                    let index = self.expr(0)?;
                    self.expect("]")?;
                    lhs = Ast::Indexer(Box::new(lhs), Box::new(index));
                    continue;
                }
                Tok::Ident(w) if w.as_ref() == "is" || w.as_ref() == "as" => {
                    if BP_TYPE < min_bp {
                        break;
                    }
                    self.next();
                    let spec = self.type_spec()?;
                    lhs = if w.as_ref() == "is" {
                        Ast::Is(Box::new(lhs), spec)
                    } else {
                        Ast::As(Box::new(lhs), spec)
                    };
                    continue;
                }
                _ => {}
            }
            let Some((op, bp)) = infix_op(&t.kind) else {
                break;
            };
            if bp < min_bp {
                break;
            }
            self.next();
            let rhs = self.expr(bp + 1)?;
            lhs = Ast::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn prefix(&mut self) -> Result<Ast, ParseError> {
        let t = self.next();
        Ok(match t.kind {
            Tok::Number(text) => {
                let number = self.number(&text, t.offset)?;
                // A quantity: a number followed by a unit string or word.
                match self.peek_kind().clone() {
                    Tok::Str(unit) => {
                        self.next();
                        Ast::Literal(Item::Quantity(number_dec(&number), unit))
                    }
                    Tok::Ident(word) if calendar_unit(&word).is_some() => {
                        self.next();
                        Ast::Literal(Item::Quantity(number_dec(&number), word))
                    }
                    _ => Ast::Literal(number),
                }
            }
            Tok::Str(s) => Ast::Literal(Item::Str(s)),
            Tok::DateTime(body) => match Temporal::parse_literal(&body) {
                Some(t) => Ast::Literal(Item::Temporal(t)),
                None => return Err(self.error_at(t.offset, "invalid date/time literal")),
            },
            Tok::Special(name) => match name.as_ref() {
                "this" => Ast::This,
                "index" => Ast::Index,
                _ => Ast::Total,
            },
            Tok::Var(name) => Ast::Var(name),
            Tok::Sym("(") => {
                let inner = self.expr(0)?;
                self.expect(")")?;
                inner
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ast::Empty
            }
            Tok::Sym("-") => {
                let operand = self.expr(BP_UNARY)?;
                Ast::Negate(Box::new(operand))
            }
            Tok::Sym("+") => self.expr(BP_UNARY)?,
            Tok::Ident(ref w) if w.as_ref() == "true" => Ast::Literal(Item::Bool(true)),
            Tok::Ident(ref w) if w.as_ref() == "false" => Ast::Literal(Item::Bool(false)),
            Tok::Ident(_) | Tok::Delimited(_) => {
                self.pos -= 1;
                self.invocation(None)?
            }
            other => {
                return Err(self.error_at(t.offset, format!("unexpected {}", describe(&other))));
            }
        })
    }

    fn number(&self, text: &str, offset: usize) -> Result<Item<'static>, ParseError> {
        if text.contains('.') {
            Decimal::from_str(text)
                .map(Item::Dec)
                .map_err(|_| self.error_at(offset, format!("decimal '{text}' out of range")))
        } else {
            text.parse::<i64>()
                .map(Item::Int)
                .map_err(|_| self.error_at(offset, format!("integer '{text}' out of range")))
        }
    }

    /// An identifier or a function call, after a `.` (with `target`) or at
    /// the start of a term.
    fn invocation(&mut self, target: Option<Ast>) -> Result<Ast, ParseError> {
        let t = self.next();
        let (name, delimited) = match t.kind {
            Tok::Ident(n) => (n, false),
            Tok::Delimited(n) => (n, true),
            other => {
                return Err(self.error_at(
                    t.offset,
                    format!(
                        "expected an identifier or function, found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        if delimited || *self.peek_kind() != Tok::Sym("(") {
            return Ok(match target {
                Some(target) => Ast::Child(Box::new(target), name),
                None => Ast::Member(name),
            });
        }
        self.next(); // (
        let func = match functions::lookup(&name) {
            Some(def) => CallKind::Builtin(def.func),
            None if self.host_functions.contains(&name.as_ref()) => CallKind::Host(name.clone()),
            None => return Err(self.error_at(t.offset, format!("unknown function '{name}'"))),
        };
        let type_function = matches!(func, CallKind::Builtin(Func::Is | Func::As | Func::OfType));
        let mut args = Vec::new();
        let mut type_arg = None;
        if *self.peek_kind() != Tok::Sym(")") {
            if type_function {
                type_arg = Some(self.type_spec()?);
            } else {
                loop {
                    args.push(self.expr(0)?);
                    if *self.peek_kind() == Tok::Sym(",") {
                        self.next();
                        continue;
                    }
                    break;
                }
            }
        }
        self.expect(")")?;
        let argc = args.len() + usize::from(type_arg.is_some());
        if let CallKind::Builtin(f) = func {
            let def = functions::def(f);
            if argc < def.min_args || argc > def.max_args {
                let expected = if def.min_args == def.max_args {
                    format!("{}", def.min_args)
                } else {
                    format!("{} to {}", def.min_args, def.max_args)
                };
                return Err(self.error_at(
                    t.offset,
                    format!("function '{name}' takes {expected} argument(s), got {argc}"),
                ));
            }
        }
        // Compile a literal pattern once rather than on every evaluation.
        let regex = match (&func, args.first()) {
            (
                CallKind::Builtin(Func::Matches | Func::ReplaceMatches),
                Some(Ast::Literal(Item::Str(p))),
            ) => Some(Regex::new(p).map_err(|e| {
                self.error_at(t.offset, format!("invalid regular expression: {e}"))
            })?),
            _ => None,
        };
        Ok(Ast::Call(Box::new(Call {
            target,
            func,
            args,
            type_arg,
            regex,
        })))
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = self.type_ident()?;
        if *self.peek_kind() == Tok::Sym(".") {
            self.next();
            let name = self.type_ident()?;
            return Ok(TypeSpec {
                namespace: Some(first),
                name,
            });
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn type_ident(&mut self) -> Result<Arc<str>, ParseError> {
        let t = self.next();
        match t.kind {
            Tok::Ident(n) | Tok::Delimited(n) => Ok(n),
            other => Err(self.error_at(
                t.offset,
                format!("expected a type name, found {}", describe(&other)),
            )),
        }
    }
}

fn number_dec(item: &Item<'_>) -> Decimal {
    match item {
        Item::Int(i) => Decimal::from(*i),
        Item::Dec(d) => *d,
        _ => Decimal::ZERO,
    }
}
