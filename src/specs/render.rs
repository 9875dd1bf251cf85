//! A spec's prose rendered to HTML for the component page and the editor's preview.
//!
//! Markdown is rendered with pulldown-cmark (GFM tables, strikethrough, task lists) and the result
//! sanitized with ammonia's allow-list: the prose comes from a repository many people can write to,
//! so scripts, event handlers, `javascript:` links and styles never reach the page. Images are
//! dropped: they would point outside the appliance (the UI loads nothing from elsewhere) or at
//! repository paths Arno does not serve.

use pulldown_cmark::{Options, Parser};

/// Render Markdown prose to sanitized HTML.
pub fn prose_to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, Parser::new_ext(markdown, options));
    ammonia::Builder::default().rm_tags(["img"]).clean(&html).to_string()
}

#[derive(askama::Template)]
#[template(path = "spec_preview.html")]
struct Preview<'a> {
    prose_html: String,
    component: &'a super::Component,
}

/// The editor's preview: the prose, then the props and events as tables (every value escaped).
pub fn preview_html(prose: &str, component: &super::Component) -> Result<String, askama::Error> {
    use askama::Template;
    Preview { prose_html: prose_to_html(prose), component }.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown_and_strips_anything_active() {
        let html = prose_to_html(
            "# Title\n\nSome *text* and [a link](https://example.com) and [bad](javascript:alert(1)).\n\n\
             <script>alert(1)</script><img src=\"https://tracker.example/x.png\">\n\n\
             <a href=\"#\" onclick=\"steal()\">x</a>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>text</em>"));
        assert!(html.contains("href=\"https://example.com\""));
        assert!(html.contains("<table>"));
        for bad in ["<script", "javascript:", "onclick", "<img", "tracker.example"] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
    }
}
