//! The texts of a credential request (SPEC §4, §9): its name and description,
//! each credential's note and connection name, a decline reason, and the
//! tracking labels (client, project, owner). Each is built only by `parse`,
//! which trims, counts characters (not bytes) and names the broken limit.
//!
//! One-line values (names, labels) refuse every control character. Prose
//! (description, note, decline reason) may also hold line breaks and tabs.
//! Neither may hold the Unicode characters that reorder text on screen
//! (U+202A–U+202E, U+2066–U+2069): a recipient decides whom to trust from what
//! these texts show, so they must show what they contain.

use crate::text::shorten;
use crate::ValidationError;
use serde::Serialize;
use std::fmt;

/// Whether a value may span several lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Several,
}

fn reorders_text(character: char) -> bool {
    matches!(character, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn allowed_character(character: char, lines: Lines) -> bool {
    if reorders_text(character) {
        return false;
    }
    if character.is_control() {
        return lines == Lines::Several && matches!(character, '\n' | '\r' | '\t');
    }
    true
}

/// Trims `raw` and checks its length (at most `max` characters) and characters.
/// `None` when nothing is left after trimming; each type decides whether that
/// is allowed.
fn checked_text(
    field: &str,
    raw: &str,
    max: usize,
    lines: Lines,
) -> Result<Option<String>, ValidationError> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let length = value.chars().count();
    if length > max {
        return Err(ValidationError::new(
            field,
            format!("{field} is {length} characters; the limit is {max}"),
        ));
    }
    if let Some((position, character)) = value
        .chars()
        .enumerate()
        .find(|(_, character)| !allowed_character(*character, lines))
    {
        let kind = if reorders_text(character) {
            "the text-direction character"
        } else {
            "the control character"
        };
        return Err(ValidationError::new(
            field,
            format!(
                "{field} {:?} contains {kind} U+{:04X} at character {}; remove it",
                shorten(value),
                u32::from(character),
                position + 1
            ),
        ));
    }
    Ok(Some(value.to_string()))
}

fn required(field: &str, raw: &str, max: usize, lines: Lines) -> Result<String, ValidationError> {
    checked_text(field, raw, max, lines)?.ok_or_else(|| {
        ValidationError::new(
            field,
            format!("{field} is empty; it needs 1 to {max} characters"),
        )
    })
}

/// The string type, its `as_str` and `Display`.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// The name of a request: required, 1 to 255 characters, one line.
    RequestName
);

impl RequestName {
    pub const MAX: usize = 255;

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        required(field, raw, Self::MAX, Lines::One).map(RequestName)
    }
}

text_value!(
    /// What a request is for: 1 to 256 characters when given. A request
    /// without one holds `Option<Description>`.
    Description
);

impl Description {
    pub const MAX: usize = 256;

    /// A description that must be there.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        required(field, raw, Self::MAX, Lines::Several).map(Description)
    }

    /// An optional description: absent, empty or only spaces is `None`.
    pub fn parse_optional(field: &str, raw: Option<&str>) -> Result<Option<Self>, ValidationError> {
        match raw {
            None => Ok(None),
            Some(raw) => Ok(checked_text(field, raw, Self::MAX, Lines::Several)?.map(Description)),
        }
    }
}

text_value!(
    /// Why and how a requested credential will be used: 1 to 256 characters
    /// when given. A credential without one holds `Option<Note>`.
    Note
);

impl Note {
    pub const MAX: usize = 256;

    /// A note that must be there.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        required(field, raw, Self::MAX, Lines::Several).map(Note)
    }

    /// An optional note: absent, empty or only spaces is `None`.
    pub fn parse_optional(field: &str, raw: Option<&str>) -> Result<Option<Self>, ValidationError> {
        match raw {
            None => Ok(None),
            Some(raw) => Ok(checked_text(field, raw, Self::MAX, Lines::Several)?.map(Note)),
        }
    }
}

/// Why a recipient declined: at most 256 characters, and may be empty (the
/// Make-compatible API accepts a decline without a reason). `Display` shows
/// "no reason given" for an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeclineReason(String);

impl DeclineReason {
    pub const MAX: usize = 256;
    /// What is shown for a decline without a reason.
    pub const NOT_GIVEN: &'static str = "no reason given";

    /// A reason as typed; empty or only spaces means no reason.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let reason = checked_text(field, raw, Self::MAX, Lines::Several)?;
        Ok(DeclineReason(reason.unwrap_or_default()))
    }

    /// A reason that may be absent from the input.
    pub fn parse_optional(field: &str, raw: Option<&str>) -> Result<Self, ValidationError> {
        Self::parse(field, raw.unwrap_or(""))
    }

    /// The reason as stored: empty when none was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reason, if one was given.
    pub fn given(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }

    /// What to show people: the reason, or "no reason given".
    pub fn shown(&self) -> &str {
        self.given().unwrap_or(Self::NOT_GIVEN)
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

text_value!(
    /// The name that tells a request's connections apart: 1 to 255 characters,
    /// one line. Defaults to `<Request name> — <App label>`.
    ConnectionName
);

impl ConnectionName {
    pub const MAX: usize = 255;
    const SEPARATOR: &'static str = " — ";

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        required(field, raw, Self::MAX, Lines::One).map(ConnectionName)
    }

    /// `<Request name> — <App label>`, at most 255 characters.
    ///
    /// When that is too long the request name is shortened (ending in "…") so
    /// the app label, which is what tells the request's connections apart,
    /// survives; only an app label too long to fit at all is cut itself. Lengths
    /// are counted and cut in characters, so the result is always valid UTF-8.
    /// Characters a connection name may not hold are replaced in the label by
    /// spaces; an empty label gives the request name alone.
    pub fn default_for(request_name: &RequestName, app_label: &str) -> ConnectionName {
        let label: String = app_label
            .chars()
            .map(|c| {
                if allowed_character(c, Lines::One) {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let label = label.trim();
        let name = request_name.as_str();
        if label.is_empty() {
            return ConnectionName(name.to_string());
        }
        let separator_length = Self::SEPARATOR.chars().count();
        let label_length = label.chars().count();
        let name_length = name.chars().count();
        if name_length + separator_length + label_length <= Self::MAX {
            return ConnectionName(format!("{name}{}{label}", Self::SEPARATOR));
        }
        // Room for at least one character of the name and the ellipsis.
        let name_budget = Self::MAX.saturating_sub(separator_length + label_length + 1);
        if name_budget >= 1 {
            let head: String = name.chars().take(name_budget).collect();
            return ConnectionName(format!("{}…{}{label}", head.trim_end(), Self::SEPARATOR));
        }
        let whole = format!("{name}{}{label}", Self::SEPARATOR);
        let cut: String = whole.chars().take(Self::MAX).collect();
        ConnectionName(cut.trim_end().to_string())
    }
}

text_value!(
    /// A tracking label of a request (client, project or owner; SPEC §9): 1 to
    /// 100 characters, one line. An absent label is `Option<TrackingField>`.
    TrackingField
);

impl TrackingField {
    pub const MAX: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        required(field, raw, Self::MAX, Lines::One).map(TrackingField)
    }

    /// An optional label: absent, empty or only spaces is `None`.
    pub fn parse_optional(field: &str, raw: Option<&str>) -> Result<Option<Self>, ValidationError> {
        match raw {
            None => Ok(None),
            Some(raw) => Ok(checked_text(field, raw, Self::MAX, Lines::One)?.map(TrackingField)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` copies of a two-byte character, to show limits count characters.
    fn accents(count: usize) -> String {
        "é".repeat(count)
    }

    #[test]
    fn request_name_is_required_trimmed_and_at_most_255_characters() {
        assert_eq!(
            RequestName::parse("name", "  Onboarding ACME  ")
                .unwrap()
                .as_str(),
            "Onboarding ACME"
        );
        assert!(RequestName::parse("name", &"x".repeat(255)).is_ok());
        assert!(RequestName::parse("name", &accents(255)).is_ok());
        let err = RequestName::parse("name", &accents(256)).unwrap_err();
        assert_eq!(err.field, "name");
        assert_eq!(err.message, "name is 256 characters; the limit is 255");
        let err = RequestName::parse("name", "   ").unwrap_err();
        assert_eq!(err.message, "name is empty; it needs 1 to 255 characters");
        assert!(RequestName::parse("name", "").is_err());
    }

    #[test]
    fn one_line_values_refuse_control_and_direction_characters() {
        let err = RequestName::parse("name", "a\nb").unwrap_err();
        assert_eq!(
            err.message,
            "name \"a\\nb\" contains the control character U+000A at character 2; remove it"
        );
        assert!(RequestName::parse("name", "a\u{7}b").is_err());
        assert!(RequestName::parse("name", "a\tb").is_err());
        let err = RequestName::parse("name", "invoice\u{202E}fdp.exe").unwrap_err();
        assert!(
            err.message
                .contains("the text-direction character U+202E at character 8"),
            "{}",
            err.message
        );
        assert!(ConnectionName::parse("connection_name", "a\u{0}").is_err());
        assert!(TrackingField::parse("client", "a\u{1b}[31m").is_err());
        assert!(TrackingField::parse("client", "a\u{2067}b").is_err());
        // Non-Latin text is not a control character.
        assert!(RequestName::parse("name", "Доступ к CRM — 顧客").is_ok());
    }

    #[test]
    fn description_is_optional_and_at_most_256_characters() {
        assert_eq!(Description::parse_optional("description", None), Ok(None));
        assert_eq!(
            Description::parse_optional("description", Some("")),
            Ok(None)
        );
        assert_eq!(
            Description::parse_optional("description", Some("  \n ")),
            Ok(None)
        );
        let description = Description::parse_optional("description", Some(" For the\nCRM sync "))
            .unwrap()
            .unwrap();
        assert_eq!(description.as_str(), "For the\nCRM sync");
        assert!(Description::parse("description", &accents(256)).is_ok());
        let err = Description::parse_optional("description", Some(&"x".repeat(311))).unwrap_err();
        assert_eq!(
            err.message,
            "description is 311 characters; the limit is 256"
        );
        assert!(Description::parse("description", &accents(257)).is_err());
        assert!(Description::parse("description", "").is_err());
        assert!(Description::parse("description", "a\u{0}b").is_err());
        assert!(Description::parse("description", "a\u{202D}b").is_err());
    }

    #[test]
    fn note_is_at_most_256_characters_and_may_span_lines() {
        assert!(Note::parse("note", "Reads invoices.\r\n\tNothing else.").is_ok());
        assert!(Note::parse("note", &accents(256)).is_ok());
        let err = Note::parse("credentials[0].note", &accents(257)).unwrap_err();
        assert_eq!(err.field, "credentials[0].note");
        assert_eq!(
            err.message,
            "credentials[0].note is 257 characters; the limit is 256"
        );
        assert_eq!(Note::parse_optional("note", Some(" ")), Ok(None));
        assert!(Note::parse("note", " ").is_err());
        assert!(Note::parse("note", "bell\u{7}").is_err());
    }

    #[test]
    fn decline_reason_may_be_absent_and_is_shown_as_no_reason_given() {
        let none = DeclineReason::parse_optional("reason", None).unwrap();
        assert_eq!(none.given(), None);
        assert_eq!(none.as_str(), "");
        assert_eq!(none.shown(), "no reason given");
        assert_eq!(none.to_string(), "no reason given");
        assert_eq!(DeclineReason::parse("reason", "   ").unwrap(), none);

        let reason = DeclineReason::parse("reason", " We use another CRM ").unwrap();
        assert_eq!(reason.given(), Some("We use another CRM"));
        assert_eq!(reason.to_string(), "We use another CRM");

        assert!(DeclineReason::parse("reason", &accents(256)).is_ok());
        let err = DeclineReason::parse("reason", &accents(257)).unwrap_err();
        assert_eq!(err.message, "reason is 257 characters; the limit is 256");
        assert!(DeclineReason::parse("reason", "a\u{0}").is_err());
    }

    #[test]
    fn connection_name_is_1_to_255_characters() {
        assert!(ConnectionName::parse("connection_name", &accents(255)).is_ok());
        let err = ConnectionName::parse("connection_name", &accents(256)).unwrap_err();
        assert_eq!(
            err.message,
            "connection_name is 256 characters; the limit is 255"
        );
        assert!(ConnectionName::parse("connection_name", "").is_err());
    }

    #[test]
    fn default_connection_name_joins_request_name_and_app_label() {
        let name = RequestName::parse("name", "Onboarding ACME").unwrap();
        assert_eq!(
            ConnectionName::default_for(&name, "Google Sheets").as_str(),
            "Onboarding ACME — Google Sheets"
        );
        assert_eq!(
            ConnectionName::default_for(&name, "  ").as_str(),
            "Onboarding ACME"
        );
        assert_eq!(
            ConnectionName::default_for(&name, "Bad\nLabel").as_str(),
            "Onboarding ACME — Bad Label"
        );
    }

    #[test]
    fn default_connection_name_that_just_fits_is_kept_whole() {
        // 251 + 3 (" — ") + 1 = 255.
        let name = RequestName::parse("name", &accents(251)).unwrap();
        let connection = ConnectionName::default_for(&name, "日");
        assert_eq!(connection.as_str().chars().count(), 255);
        assert_eq!(connection.as_str(), format!("{} — 日", accents(251)));
    }

    #[test]
    fn default_connection_name_is_cut_on_a_character_boundary_keeping_the_label() {
        // 255 two-byte characters: cutting at byte 255 would split one.
        let name = RequestName::parse("name", &accents(255)).unwrap();
        let connection = ConnectionName::default_for(&name, "Google Sheets");
        let text = connection.as_str();
        assert_eq!(text.chars().count(), ConnectionName::MAX);
        assert!(text.ends_with("é… — Google Sheets"), "{text}");
        assert!(text.starts_with("éé"));
        assert!(ConnectionName::parse("connection_name", text).is_ok());

        // A label of three-byte characters too long to fit at all is cut itself.
        let short = RequestName::parse("name", "CRM").unwrap();
        let connection = ConnectionName::default_for(&short, &"日".repeat(300));
        let text = connection.as_str();
        assert_eq!(text.chars().count(), ConnectionName::MAX);
        assert_eq!(text, format!("CRM — {}", "日".repeat(249)));
    }

    #[test]
    fn tracking_fields_are_at_most_100_characters() {
        assert_eq!(
            TrackingField::parse("client", " ACME ").unwrap().as_str(),
            "ACME"
        );
        assert!(TrackingField::parse("project", &accents(100)).is_ok());
        let err = TrackingField::parse("project", &accents(101)).unwrap_err();
        assert_eq!(err.message, "project is 101 characters; the limit is 100");
        assert!(TrackingField::parse("owner", "").is_err());
        assert_eq!(TrackingField::parse_optional("owner", Some("")), Ok(None));
        assert_eq!(TrackingField::parse_optional("owner", None), Ok(None));
    }
}
