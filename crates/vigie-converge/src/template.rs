//! MiniJinja, strict: an undefined variable is an error (never an empty
//! string in a config file), and every render has a fuel limit (a
//! runaway loop stops with an error instead of hanging the run).

use minijinja::{Environment, UndefinedBehavior, Value};

/// Instructions one render may spend: far beyond any config file,
/// small enough that `{% for i in range(10**9) %}` stops at once.
pub const FUEL: u64 = 200_000;

pub struct Templates {
    env: Environment<'static>,
    /// vars (host groups', then the host's over them) and `facts`.
    base: Value,
}

impl Templates {
    pub fn new(base: Value) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_keep_trailing_newline(true);
        Templates { env, base }
    }

    fn context(&self, item: Option<&Value>) -> Value {
        match item {
            Some(item) => minijinja::context! { item => item.clone(), ..self.base.clone() },
            None => self.base.clone(),
        }
    }

    /// Whether a string is a template (plain strings skip MiniJinja).
    pub fn is_template(s: &str) -> bool {
        s.contains("{{") || s.contains("{%") || s.contains("{#")
    }

    /// Render `source` (named `name` in errors).
    pub fn render(&self, name: &str, source: &str, item: Option<&Value>) -> Result<String, String> {
        self.env
            .render_named_str(name, source, self.context(item))
            .map_err(|e| describe(&e))
    }

    /// Evaluate an expression (`for_each = "users"`) to a list.
    pub fn list(&self, expr: &str) -> Result<Vec<Value>, String> {
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e))?;
        let v = e.eval(self.context(None)).map_err(|e| describe(&e))?;
        if v.is_undefined() {
            return Err(format!("`{expr}` is undefined"));
        }
        match v.try_iter() {
            Ok(it) => Ok(it.collect()),
            Err(_) => Err(format!("`{expr}` is {v}, not a list")),
        }
    }
}

/// MiniJinja's error with its line, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line()
        && !s.contains("line")
    {
        s = format!("{s} (line {line})");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Templates {
        Templates::new(minijinja::context! { port => 8080, users => vec!["ann", "bob"] })
    }

    #[test]
    fn an_undefined_variable_is_an_error() {
        let e = t().render("x", "listen {{ prot }}", None).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        assert_eq!(
            t().render("x", "listen {{ port }}\n", None).unwrap(),
            "listen 8080\n"
        );
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let e = t()
            .render(
                "x",
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                None,
            )
            .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
    }

    #[test]
    fn for_each_lists_come_from_expressions() {
        let l = t().list("users").unwrap();
        assert_eq!(l.len(), 2);
        assert!(t().list("port").is_err());
        assert!(t().list("nope").is_err());
    }
}
