//! Rendering reports for people: inline-SVG charts ([`chart`]) and server-rendered HTML pages
//! ([`html`]). No JavaScript: the pages are plain HTML and CSS that read on a laptop or a phone.

pub mod chart;
mod effects;
pub mod html;
