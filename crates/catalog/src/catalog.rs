//! The catalog: the built-in apps plus the operator's own, keyed by app key.
//! Loaded once at start; every file is validated then, so a bad file stops the
//! start with a message naming it rather than failing a request later.

use crate::app::App;
use crate::builtin::BUILTIN;
use crate::error::CatalogError;
use crate::load::{parse_app, Origin};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Every app Credence knows, by key.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    apps: BTreeMap<String, App>,
}

impl Catalog {
    /// The apps that ship with Credence.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        for (name, text) in BUILTIN {
            catalog.add(parse_app(&format!("apps/{name}"), text, Origin::Builtin)?)?;
        }
        Ok(catalog)
    }

    /// The built-in apps plus every `*.toml` file directly in `operator_dir`, read
    /// in file-name order. Other files, hidden files and subdirectories are
    /// ignored; a directory that cannot be read is an error, not an empty set. An
    /// app key defined twice (an operator file reusing a built-in key, or two
    /// operator files) is refused naming both files.
    pub fn load(operator_dir: Option<&Path>) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::builtin()?;
        let Some(directory) = operator_dir else {
            return Ok(catalog);
        };
        let read_directory_error = |source| CatalogError::ReadDirectory {
            path: directory.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(directory).map_err(read_directory_error)? {
            let entry = entry.map_err(read_directory_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().map_err(read_directory_error)?.is_file()
                // Follow symlinks so a directory of links (a common deployment
                // shape with mounted configuration) works too.
                || entry.path().is_file();
            if is_file && name.ends_with(".toml") && !name.starts_with('.') {
                files.push(entry.path());
            }
        }
        files.sort();
        for path in files {
            let shown = path.display().to_string();
            let text = fs::read_to_string(&path).map_err(|source| CatalogError::ReadFile {
                path: shown.clone(),
                source,
            })?;
            catalog.add(parse_app(&shown, &text, Origin::Operator)?)?;
        }
        Ok(catalog)
    }

    fn add(&mut self, app: App) -> Result<(), CatalogError> {
        if let Some(existing) = self.apps.get(&app.key) {
            return Err(CatalogError::DuplicateKey {
                key: app.key,
                first: existing.source.clone(),
                second: app.source,
            });
        }
        self.apps.insert(app.key.clone(), app);
        Ok(())
    }

    /// The app with this key.
    pub fn get(&self, key: &str) -> Option<&App> {
        self.apps.get(key)
    }

    /// Every app, ordered by key.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}
