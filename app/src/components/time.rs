//! Times for people: a `<time>` that shows how long ago (or the date, when it was long ago) in
//! the viewer's own time zone, with the exact local time on hover. The server does not know the
//! viewer's zone: it renders the UTC time, and the browser replaces it once the page is live.

use leptos::prelude::*;

/// `at` is an RFC 3339 time from the server, in UTC.
#[component]
pub fn Time(#[prop(into)] at: String) -> impl IntoView {
    // The server and the browser's first render show the same text (from the string alone), so
    // hydration finds what it expects; the browser's zone takes over after.
    let utc = utc_text(&at);
    let shown = RwSignal::new((utc.clone(), utc));
    #[cfg(feature = "hydrate")]
    {
        let at = at.clone();
        Effect::new(move |_| {
            if let Some(local) = browser::describe(&at) {
                shown.set(local);
            }
        });
    }
    view! { <time datetime=at title=move || shown.get().1>{move || shown.get().0}</time> }
}

/// `2026-12-08 00:14 UTC` from `2026-12-08T00:14:33.564546Z`; the text itself if it is not one.
pub fn utc_text(at: &str) -> String {
    match (at.get(0..10), at.get(11..16)) {
        (Some(date), Some(hm)) if at.as_bytes().get(10) == Some(&b'T') => {
            format!("{date} {hm} UTC")
        }
        _ => at.to_owned(),
    }
}

/// How long ago `secs` seconds is, in words; `None` past a week (the date says it better then).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn ago(secs: i64) -> Option<String> {
    Some(match secs {
        i64::MIN..=-60 => return None,
        -59..=59 => "just now".to_owned(),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        86_400..=172_799 => "yesterday".to_owned(),
        172_800..=604_799 => format!("{} days ago", secs / 86_400),
        _ => return None,
    })
}

#[cfg(feature = "hydrate")]
mod browser {
    use wasm_bindgen::JsValue;

    /// (what to show, the exact time for the title) in the browser's locale and zone.
    pub fn describe(at: &str) -> Option<(String, String)> {
        let date = js_sys::Date::new(&JsValue::from_str(at));
        let ms = date.get_time();
        if ms.is_nan() {
            return None;
        }
        let exact: String = date.to_locale_string("default", &JsValue::UNDEFINED).into();
        let secs = ((js_sys::Date::now() - ms) / 1000.0).round() as i64;
        Some((super::ago(secs).unwrap_or_else(|| exact.clone()), exact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_short() {
        assert_eq!(utc_text("2026-12-08T00:14:33.564546Z"), "2026-12-08 00:14 UTC");
        assert_eq!(utc_text("soon"), "soon");
    }

    #[test]
    fn ago_in_words() {
        assert_eq!(ago(5).as_deref(), Some("just now"));
        assert_eq!(ago(-5).as_deref(), Some("just now"), "a clock a little ahead");
        assert_eq!(ago(3 * 60 + 10).as_deref(), Some("3 min ago"));
        assert_eq!(ago(2 * 3600).as_deref(), Some("2 h ago"));
        assert_eq!(ago(86_400 + 5).as_deref(), Some("yesterday"));
        assert_eq!(ago(3 * 86_400).as_deref(), Some("3 days ago"));
        assert_eq!(ago(30 * 86_400), None);
        assert_eq!(ago(-3600), None);
    }
}
