//! Reading one table of an array of tables in the configuration file (`[[oidc]]`,
//! `[[git.connections]]`): its keys checked against the known ones, strings, flags, and secrets
//! given inline or by `_file` (mounted by Kubernetes or systemd) — every error naming the key as
//! written, `oidc[0].client_secret`.

use super::ConfigError;

pub struct Fields<'a> {
    table: &'a toml::Table,
    /// `oidc[0]`.
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(table: &'a toml::Table, prefix: String) -> Fields<'a> {
        Fields { table, prefix }
    }

    /// The key as the error names it.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.prefix)
    }

    pub fn err(&self, k: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { key: self.key(k), message: message.into() }
    }

    /// Refuse a key not in `known` (usually a typo).
    pub fn only(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(self.err(unknown, format!("unknown key (known: {})", known.join(", ")))),
            None => Ok(()),
        }
    }

    pub fn get(&self, k: &str) -> Option<&'a toml::Value> {
        self.table.get(k)
    }

    pub fn string(&self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.table.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(k, "must be a string")),
        }
    }

    /// A string that is there and not blank.
    pub fn required(&self, k: &str) -> Result<String, ConfigError> {
        self.string(k)?.filter(|s| !s.trim().is_empty()).ok_or_else(|| self.err(k, "is required"))
    }

    /// `true` or `false`; `false` when absent.
    pub fn flag(&self, k: &str) -> Result<bool, ConfigError> {
        match self.table.get(k) {
            None => Ok(false),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(self.err(k, "must be true or false")),
        }
    }

    /// `k` itself, or the content of the file `k_file` names (its last line ending dropped);
    /// never both.
    pub fn value_or_file(&self, k: &str) -> Result<Option<String>, ConfigError> {
        let file_key = format!("{k}_file");
        match (self.string(k)?, self.string(&file_key)?) {
            (Some(_), Some(_)) => Err(self.err(k, format!("set either {k} or {file_key}, not both"))),
            (Some(v), None) => Ok(Some(v)),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| self.err(&file_key, format!("cannot read {path}: {e}")))?;
                let v = text.trim_end_matches(['\n', '\r']).to_owned();
                if v.is_empty() {
                    return Err(self.err(&file_key, format!("{path} is empty")));
                }
                Ok(Some(v))
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn values_files_and_their_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let t = table(&format!(
            "a = \"x\"\nb_file = \"{}\"\nc = 1\nd = \"y\"\nd_file = \"{}\"\ne_file = \"{}\"\nflag = true\n",
            secret.display(),
            secret.display(),
            empty.display()
        ));
        let f = Fields::new(&t, "things[2]".into());
        assert_eq!(f.value_or_file("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.value_or_file("b").unwrap().as_deref(), Some("from-a-file"));
        assert_eq!(f.value_or_file("none").unwrap(), None);
        assert_eq!(f.string("c").unwrap_err().key, "things[2].c");
        assert!(f.value_or_file("d").unwrap_err().message.contains("not both"));
        assert_eq!(f.value_or_file("e").unwrap_err().key, "things[2].e_file");
        assert_eq!(f.required("missing").unwrap_err().message, "is required");
        assert!(f.flag("flag").unwrap() && !f.flag("other").unwrap());
        assert_eq!(f.only(&["a"]).unwrap_err().key, "things[2].b_file");
    }
}
