//! The request lists are read through indexes, on both databases: no plan of
//! the Sent or Received list (page or count), in any sort or with any filter
//! a view adds, scans the requests table; and the page of one team or one
//! recipient, in any of its sorts, is read in index order, with no sort step
//! over everything that matches — also the page read after a previous
//! page's end (keyset), which starts at that key in the index. A query or an index change that loses this
//! fails here rather than only in the bench's figures.

use crate::on_both_backends;
use crate::support::spawn_app;
use credence_domain::{TeamId, UserId};
use credence_store::{Backend, RequestFilter, RequestScope, TrackingView};

/// A full scan of the requests table, as each database prints it.
fn scans_requests(backend: Backend, line: &str) -> bool {
    match backend {
        // `SCAN t USING INDEX i` reads all of the index: a scan all the same.
        Backend::Sqlite => line.starts_with("SCAN credential_requests"),
        Backend::Postgres => line.contains("Seq Scan on credential_requests"),
    }
}

/// A step that sorts what it read. On SQLite a page's rows are gathered into
/// one JSON value in the page's order (`one_row`), which sorts again only
/// the page's rows, read in index order and limited: not a sort of what
/// matches.
fn sorts(backend: Backend, line: &str) -> bool {
    match backend {
        Backend::Sqlite => {
            line.contains("TEMP B-TREE") && !line.contains("FOR json_group_array(ORDER BY)")
        }
        Backend::Postgres => line
            .trim_start()
            .trim_start_matches("->  ")
            .starts_with("Sort"),
    }
}

/// A range of an index that starts at the seek key.
fn seeks_in_index(backend: Backend, line: &str) -> bool {
    match backend {
        Backend::Sqlite => {
            line.starts_with("SEARCH credential_requests USING") && line.contains(",id)")
        }
        Backend::Postgres => line.contains("Index Cond") && line.contains("ROW("),
    }
}

async fn the_request_lists_are_read_through_indexes(backend: Backend) {
    let app = spawn_app(backend).await;
    let one_team = RequestScope::Sent {
        teams: vec![TeamId(1)],
        recipient: None,
    };
    let received = RequestScope::Received {
        recipient: UserId(1),
    };
    let two_teams = RequestScope::Sent {
        teams: vec![TeamId(1), TeamId(2)],
        recipient: None,
    };
    let two_teams_to_one = RequestScope::Sent {
        teams: vec![TeamId(1), TeamId(2)],
        recipient: Some(UserId(1)),
    };
    let now = chrono::Utc::now();
    let mut checked = 0;
    for (scope, in_index_order) in [
        (one_team, true),
        (received, true),
        (two_teams, false),
        (two_teams_to_one, false),
    ] {
        for sort_by in ["created_at", "name", "status"] {
            for descending in [true, false] {
                for view in [
                    None,
                    Some(TrackingView::Active),
                    Some(TrackingView::DueForNudge(now)),
                    Some(TrackingView::SlaBreach(now)),
                    Some(TrackingView::AuthorizedSince(now)),
                ] {
                    let filter = RequestFilter {
                        sort_by,
                        descending,
                        view,
                        offset: 100,
                        ..RequestFilter::within(scope.clone())
                    };
                    let mut tx = app.store.begin().await.unwrap();
                    let (page, count, seek) = tx.explain_list_requests(&filter).await.unwrap();
                    drop(tx);
                    let what =
                        format!("{scope:?} by {sort_by} (descending: {descending}), {view:?}");
                    for line in page.iter().chain(&count).chain(&seek) {
                        assert!(
                            !scans_requests(backend, line),
                            "{what} scans the requests table:\npage: {page:#?}\ncount: {count:#?}\nseek: {seek:#?}"
                        );
                    }
                    if in_index_order && view.is_none() {
                        for plan in [&page, &seek] {
                            assert!(
                                !plan.iter().any(|line| sorts(backend, line)),
                                "{what} sorts instead of reading an index in order:\n{plan:#?}"
                            );
                        }
                        // The page after a key starts there in the index: the
                        // key is in the index's condition, not a filter of
                        // everything before it.
                        assert!(
                            seek.iter().any(|line| seeks_in_index(backend, line)),
                            "{what} does not seek in the index:\n{seek:#?}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 3 * 2 * 5);
    app.stop().await;
}

on_both_backends!(the_request_lists_are_read_through_indexes);
