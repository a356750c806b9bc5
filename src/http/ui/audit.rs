//! The audit log (`/ui/audit`): newest first, filtered by actor, action, object prefix and
//! namespace; every record for admins, a namespace's for its owners (who name it). It reads
//! through the admin API's `audit::list_records`, which decides who may.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{api_problem, page, render};
use super::{q, Viewer};
use crate::http::admin::audit::{list_records, AuditQuery};
use crate::http::AppState;

/// Records on one page.
const PAGE: u32 = 100;

pub async fn show(State(state): State<AppState>, viewer: Viewer, Query(mut aq): Query<AuditQuery>) -> Response {
    aq.limit = Some(PAGE);
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let (actor, action, object, namespace) =
        (field(&aq.actor), field(&aq.action), field(&aq.object), field(&aq.namespace));
    let (records, next) = match list_records(&state, &viewer.who, aq).await {
        Ok(r) => r,
        Err(e) => return api_problem(e),
    };
    let filters =
        format!("&actor={}&action={}&object={}&namespace={}", q(&actor), q(&action), q(&object), q(&namespace));
    let body = html! {
        form.search.filters method="get" action="/ui/audit" {
            label { "Actor" input name="actor" value=(actor) maxlength="128"; }
            label { "Action" input name="action" value=(action) placeholder="scan.release" maxlength="64"; }
            label { "Object (prefix)" input name="object" value=(object) placeholder="team/app" maxlength="512"; }
            label { "Namespace" input name="namespace" value=(namespace) maxlength="64"; }
            button type="submit" { "Filter" }
        }
        @if records.is_empty() { p.empty { "No records." } } @else {
            table.list.audit {
                thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Object" } th { "Outcome" } th { "Details" } } }
                tbody { @for r in &records {
                    @let c = &r.content;
                    tr {
                        td.mono { (crate::model::rfc3339_ms(c.time_ms).unwrap_or_default()) }
                        td.mono { (c.actor) }
                        td.mono { (c.action) }
                        td.mono { (c.object) }
                        td { (c.outcome) }
                        td.mono { @if c.details != "{}" { (c.details) } }
                    }
                } }
            }
        }
        @if let Some(n) = next { p { a.more href={ "/ui/audit?after=" (n) (filters) } { "Older records →" } } }
    };
    render(StatusCode::OK, page("Audit log", Some(&viewer), body))
}
