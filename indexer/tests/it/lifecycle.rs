//! Incremental updates, versions, persistence and recovery.

use aimarket_indexer::{Index, IndexError, SearchQuery};

use crate::support::{cap, ids, index_of, q};

const A: &str = "https://a.example";

#[test]
fn incremental_add_change_remove() {
    let index = index_of(vec![
        cap(A, "ocr.one@v1", "OCR", "Reads invoices"),
        cap(A, "ocr.two@v1", "OCR", "Reads receipts"),
    ]);
    assert_eq!(index.num_docs(), 2);

    // Change: same key, new description. Old words stop matching, new ones match.
    let mut changed = cap(A, "ocr.one@v1", "OCR", "Reads passports");
    changed.trust_score = 0.9;
    // Add one, remove one (plus an unknown key, ignored).
    let added = cap(A, "ocr.three@v1", "OCR", "Reads menus");
    let removed = cap(A, "ocr.two@v1", "", "").key;
    index
        .apply(vec![changed, added], vec![removed, "no-such-key".into()], 2)
        .unwrap();
    assert_eq!(index.num_docs(), 2);
    assert_eq!(index.search(&q("invoices")).unwrap().total, 0);
    assert_eq!(ids(&index.search(&q("passports")).unwrap()), ["ocr.one@v1"]);
    assert_eq!(index.search(&q("receipts")).unwrap().total, 0);
    assert_eq!(ids(&index.search(&q("menus")).unwrap()), ["ocr.three@v1"]);
    let page = index.search(&q("passports")).unwrap();
    assert!((page.matches[0].capability.trust_score - 0.9).abs() < 1e-12);
    assert_eq!(index.indexed_version(), Some(2));
    // Browsing skips deleted documents too (its fast path reads a precomputed order).
    let browse = index.search(&q("")).unwrap();
    assert_eq!(browse.total, 2);
    assert_eq!(browse.matches.len(), 2);
    assert!(
        browse
            .matches
            .iter()
            .all(|m| m.capability.capability_id != "ocr.two@v1")
    );
    // Browsing with a numeric bound after a delete takes the counting path with deletions.
    let budget = SearchQuery {
        budget: Some(1.0),
        ..q("")
    };
    assert_eq!(index.search(&budget).unwrap().total, 2);

    // The same key twice in one batch: the last one wins.
    let first = cap(A, "ocr.dup@v1", "OCR", "Alpha");
    let second = cap(A, "ocr.dup@v1", "OCR", "Beta");
    index.apply(vec![first, second], Vec::new(), 3).unwrap();
    assert_eq!(index.search(&q("alpha")).unwrap().total, 0);
    assert_eq!(index.search(&q("beta")).unwrap().total, 1);
    assert_eq!(index.num_docs(), 3);
}

#[test]
fn new_index_has_no_version_and_rebuild_replaces_content() {
    let index = Index::in_ram().unwrap();
    assert_eq!(index.indexed_version(), None);
    assert_eq!(index.search(&q("")).unwrap().total, 0);
    index
        .apply(vec![cap(A, "old.one@v1", "Old", "Old")], Vec::new(), 1)
        .unwrap();
    let fresh = (0..50).map(|i| cap(A, &format!("new.n{i}@v1"), "New", "Fresh"));
    assert_eq!(index.rebuild(fresh, 9).unwrap(), 50);
    assert_eq!(index.indexed_version(), Some(9));
    assert_eq!(index.num_docs(), 50);
    assert_eq!(index.search(&q("old")).unwrap().total, 0);
    assert_eq!(index.search(&q("fresh")).unwrap().total, 50);
    // Incremental updates still work after a rebuild swapped the writer.
    index
        .apply(vec![cap(A, "later@v1", "Later", "Later")], Vec::new(), 10)
        .unwrap();
    assert_eq!(index.num_docs(), 51);
    assert_eq!(index.indexed_version(), Some(10));
}

#[test]
fn content_and_version_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = Index::open_or_create(dir.path()).unwrap();
        assert_eq!(index.indexed_version(), None);
        index
            .apply(
                vec![cap(A, "ocr.one@v1", "OCR", "Reads invoices")],
                Vec::new(),
                7,
            )
            .unwrap();
        // A second open of the same directory while the first is alive is refused (the
        // writer lock), and must not wipe the live index.
        let second = Index::open_or_create(dir.path());
        assert!(matches!(second, Err(IndexError::Tantivy(_))), "{second:?}");
        assert_eq!(index.search(&q("invoices")).unwrap().total, 1);
    }
    let index = Index::open_or_create(dir.path()).unwrap();
    assert_eq!(index.indexed_version(), Some(7));
    assert_eq!(ids(&index.search(&q("invoices")).unwrap()), ["ocr.one@v1"]);
}

/// A directory holding an index with one capability, committed as version 3 and closed.
fn committed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open_or_create(dir.path()).unwrap();
    let one = cap(A, "ocr.one@v1", "OCR", "Reads invoices");
    index.apply(vec![one], Vec::new(), 3).unwrap();
    dir
}

#[test]
fn garbage_meta_json_is_recovered_empty() {
    let dir = committed_dir();
    std::fs::write(dir.path().join("meta.json"), b"{ this is not json").unwrap();
    let index = Index::open_or_create(dir.path()).unwrap();
    assert_eq!(index.indexed_version(), None, "caller must rebuild");
    assert_eq!(index.num_docs(), 0);
    index
        .rebuild(vec![cap(A, "ocr.two@v1", "OCR", "Reads receipts")], 4)
        .unwrap();
    drop(index);
    let index = Index::open_or_create(dir.path()).unwrap();
    assert_eq!(index.indexed_version(), Some(4));
    assert_eq!(index.search(&q("receipts")).unwrap().total, 1);
}

#[test]
fn missing_segment_file_is_recovered_empty() {
    let dir = committed_dir();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "fast" || e == "term") {
            std::fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0);
    let index = Index::open_or_create(dir.path()).unwrap();
    assert_eq!(index.indexed_version(), None);
    assert_eq!(index.num_docs(), 0);
}

#[test]
fn recovery_never_wipes_a_directory_with_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta.json"), b"garbage").unwrap();
    std::fs::create_dir(dir.path().join("precious")).unwrap();
    let result = Index::open_or_create(dir.path());
    assert!(
        matches!(result, Err(IndexError::NotAnIndexDirectory(_))),
        "{result:?}"
    );
    assert!(dir.path().join("precious").is_dir());
    assert!(dir.path().join("meta.json").is_file());
}

#[test]
fn searches_run_while_updates_commit() {
    let index = std::sync::Arc::new(index_of(vec![cap(A, "ocr.seed@v1", "OCR", "Reads text")]));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let index = index.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let page = index.search(&q("ocr")).unwrap();
                    // Every snapshot is a committed state: the seed plus whole batches of 5.
                    assert_eq!(
                        (page.total - 1) % 5,
                        0,
                        "saw a partial batch: {}",
                        page.total
                    );
                }
            })
        })
        .collect();
    for batch in 0..10 {
        let caps = (0..5).map(|i| cap(A, &format!("ocr.b{batch}n{i}@v1"), "OCR", "Reads text"));
        index.apply(caps.collect(), Vec::new(), batch + 2).unwrap();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(index.search(&q("ocr")).unwrap().total, 51);
    assert_eq!(index.indexed_version(), Some(11));
}
