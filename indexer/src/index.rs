//! Opening, updating and snapshotting the index.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::{LogMergePolicy, NoMergePolicy};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    IndexReader, IndexWriter, ReloadPolicy, Searcher, SegmentReader, TantivyError, Term,
};

use crate::analysis::{SURFACE_ANALYZER, TEXT_ANALYZER, surface_analyzer, text_analyzer};
use crate::error::{IndexError, Result, io_error};
use crate::filter::SegmentSignals;
use crate::model::IndexedCapability;
use crate::rank::{DefaultRanker, Ranker};
use crate::schema::{FORMAT_VERSION, Fields, HUB};
use crate::synonyms::Synonyms;

/// Arena of the long-lived writer used for incremental updates (one thread).
const INCREMENTAL_WRITER_BYTES: usize = 48 * 1024 * 1024;
/// An apply changing at least this many documents and at least 1/[`COMPACT_FRACTION`] of
/// the index merges all segments afterwards (see [`compact`]); smaller ones leave merging
/// to the log merge policy.
const COMPACT_MIN_CHANGES: u64 = 1_000;
/// See [`COMPACT_MIN_CHANGES`].
const COMPACT_FRACTION: u64 = 10;
/// Arena per thread of the bulk writer used by [`Index::rebuild`].
const BULK_WRITER_BYTES_PER_THREAD: usize = 192 * 1024 * 1024;
/// Most indexing threads a rebuild uses.
const BULK_MAX_THREADS: usize = 4;
/// Doc-store block size: a hit decompresses one block, so small blocks keep hit loading cheap
/// (tantivy's default is 16 KiB) at a small cost in compression ratio.
const DOCSTORE_BLOCK_BYTES: usize = 4096;
/// Decompressed doc-store blocks cached per segment (hot hits skip decompression).
const DOCSTORE_CACHE_BLOCKS: usize = 512;

fn index_builder() -> tantivy::IndexBuilder {
    let settings = tantivy::IndexSettings {
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..tantivy::IndexSettings::default()
    };
    tantivy::Index::builder()
        .schema(Fields::new().schema)
        .settings(settings)
}

/// What a commit records next to the segments (tantivy's commit payload).
#[derive(Debug, Serialize, Deserialize)]
struct CommitPayload {
    format: u32,
    catalog_version: u64,
}

/// An immutable view used by searches: a searcher plus everything derived from it.
pub(crate) struct Snapshot {
    pub searcher: Searcher,
    pub signals: HashMap<tantivy::index::SegmentId, Arc<SegmentSignals>>,
    pub ranker: Arc<dyn Ranker>,
    pub hubs: usize,
    pub version: Option<u64>,
    /// For each synonym alias stem present in the index, a bit mask of the text fields holding
    /// it (see [`crate::query::FIELD_BITS`]); aliases absent from a field get no term query.
    pub aliases: HashMap<String, u8>,
}

/// The capability index. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// Updates ([`Index::apply`], [`Index::rebuild`]) are serialised by an internal lock and block
/// on I/O: call them from a blocking thread. Searches never wait for updates: they run on the
/// last committed snapshot.
pub struct Index {
    pub(crate) index: tantivy::Index,
    pub(crate) fields: Fields,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) text: TextAnalyzer,
    pub(crate) surface: TextAnalyzer,
    pub(crate) synonyms: Synonyms,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("num_docs", &self.num_docs())
            .field("version", &self.indexed_version())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer leaves nothing half-applied that a later commit could
    // publish (uncommitted tantivy operations are rolled back on the next writer), so recover.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Index {
    /// Opens the index in `dir` (created if missing). `dir` must be dedicated to the index.
    ///
    /// If the directory holds an unreadable, corrupt, or other-format index, its files are
    /// deleted and an empty index is created; [`Index::indexed_version`] is then `None` and
    /// the caller rebuilds from its store. A writer lock held by another live process is an
    /// error, never a reason to wipe.
    pub fn open_or_create(dir: &Path) -> Result<Index> {
        Self::open_or_create_ranked(dir, Arc::new(DefaultRanker))
    }

    /// [`Index::open_or_create`] with the ranking policy set from the start: the per-document
    /// signals are computed once, with `ranker` (opening and then calling
    /// [`Index::set_ranker`] computes them twice, about 100 ms at a million documents).
    pub fn open_or_create_ranked(dir: &Path, ranker: Arc<dyn Ranker>) -> Result<Index> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        match Self::open_existing(dir, ranker.clone()) {
            Ok(Some(index)) => return Ok(index),
            Ok(None) => {}
            Err(IndexError::Tantivy(e @ TantivyError::LockFailure(..))) => {
                return Err(IndexError::Tantivy(e));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "search index unusable; recreating it empty");
            }
        }
        wipe(dir)?;
        let index = index_builder().create_in_dir(dir)?;
        Self::from_tantivy(index, Some(dir.to_path_buf()), ranker)
    }

    /// `Ok(None)` when there is no index yet; `Err` when there is one we cannot use.
    fn open_existing(dir: &Path, ranker: Arc<dyn Ranker>) -> Result<Option<Index>> {
        let directory = MmapDirectory::open(dir)?;
        if !tantivy::Index::exists(&directory).map_err(TantivyError::from)? {
            return Ok(None);
        }
        let index = tantivy::Index::open(directory)?;
        if index.schema() != Fields::new().schema {
            return Err(IndexError::Stored(
                "index schema differs from this version".into(),
            ));
        }
        let metas = index.load_metas()?;
        if let Some(payload) = &metas.payload {
            let payload: CommitPayload = serde_json::from_str(payload)
                .map_err(|e| IndexError::Stored(format!("commit payload: {e}")))?;
            if payload.format != FORMAT_VERSION {
                return Err(IndexError::Stored(format!(
                    "index format {} differs from {FORMAT_VERSION}",
                    payload.format
                )));
            }
        }
        let opened = Self::from_tantivy(index, Some(dir.to_path_buf()), ranker)?;
        // Touch every segment's columns so corruption shows up now rather than mid-query.
        opened.verify_segments()?;
        Ok(Some(opened))
    }

    /// An empty index in memory (tests, tools).
    pub fn in_ram() -> Result<Index> {
        Self::from_tantivy(
            index_builder().create_in_ram()?,
            None,
            Arc::new(DefaultRanker),
        )
    }

    fn from_tantivy(
        index: tantivy::Index,
        dir: Option<PathBuf>,
        ranker: Arc<dyn Ranker>,
    ) -> Result<Index> {
        let text = text_analyzer();
        index.tokenizers().register(TEXT_ANALYZER, text.clone());
        index
            .tokenizers()
            .register(SURFACE_ANALYZER, surface_analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOCSTORE_CACHE_BLOCKS)
            .try_into()?;
        let writer = incremental_writer(&index)?;
        let mut synonym_analyzer = text.clone();
        let empty = Snapshot {
            searcher: reader.searcher(),
            signals: HashMap::new(),
            ranker: ranker.clone(),
            hubs: 0,
            version: None,
            aliases: HashMap::new(),
        };
        let this = Index {
            fields: Fields::new(),
            reader,
            writer: Mutex::new(Some(writer)),
            snapshot: RwLock::new(Arc::new(empty)),
            surface: surface_analyzer(),
            synonyms: Synonyms::new(&mut synonym_analyzer),
            text,
            index,
            dir,
        };
        this.refresh(ranker)?;
        Ok(this)
    }

    fn verify_segments(&self) -> Result<()> {
        let snapshot = self.snapshot();
        for segment in snapshot.searcher.segment_readers() {
            let fields = segment.fast_fields();
            fields.f64(crate::schema::TRUST)?;
            fields.str(crate::schema::KEY)?;
        }
        Ok(())
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reloads the reader and recomputes derived data, reusing the per-segment signal arrays
    /// of segments that did not change.
    fn refresh(&self, ranker: Arc<dyn Ranker>) -> Result<()> {
        self.reader.reload()?;
        let searcher = self.reader.searcher();
        let previous = self.snapshot();
        let same_ranker = Arc::ptr_eq(&previous.ranker, &ranker);
        let mut signals = HashMap::new();
        for segment in searcher.segment_readers() {
            let id = segment.segment_id();
            let cached = previous.signals.get(&id).filter(|_| same_ranker).cloned();
            let values = match cached {
                Some(values) => values,
                None => SegmentSignals::load(segment, ranker.as_ref())?,
            };
            signals.insert(id, values);
        }
        SegmentSignals::warm(signals.values());
        let hubs = distinct_hubs(searcher.segment_readers())?;
        let mut aliases = HashMap::new();
        for stem in self.synonyms.members() {
            let mut mask = 0u8;
            for (bit, field) in self.fields.text_fields().into_iter().enumerate() {
                if searcher.doc_freq(&Term::from_field_text(field, stem))? > 0 {
                    mask |= 1 << bit;
                }
            }
            if mask != 0 {
                aliases.insert(stem.to_string(), mask);
            }
        }
        let version = read_version(&self.index)?;
        let next = Snapshot {
            searcher,
            signals,
            ranker,
            hubs,
            version,
            aliases,
        };
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Replaces the ranking policy (see [`crate::rank`]); takes effect for the next search.
    pub fn set_ranker(&self, ranker: Arc<dyn Ranker>) -> Result<()> {
        let _writer = lock(&self.writer);
        self.refresh(ranker)
    }

    /// Catalog version recorded by the last commit, `None` for a new or recreated index.
    pub fn indexed_version(&self) -> Option<u64> {
        self.snapshot().version
    }

    /// Number of indexed capabilities.
    pub fn num_docs(&self) -> u64 {
        self.snapshot().searcher.num_docs()
    }

    /// Distinct source hubs among indexed capabilities.
    pub fn num_hubs(&self) -> usize {
        self.snapshot().hubs
    }

    /// Applies an incremental change and commits it atomically with `catalog_version`.
    ///
    /// Each upsert replaces any document with the same key (the last one wins inside a batch);
    /// removes name keys (unknown keys are ignored). Readers see the change when this returns.
    pub fn apply(
        &self,
        upserts: Vec<IndexedCapability>,
        removes: Vec<String>,
        catalog_version: u64,
    ) -> Result<()> {
        let mut guard = lock(&self.writer);
        let writer = self.writer_in(&mut guard)?;
        let result = (|| -> Result<()> {
            for key in &removes {
                writer.delete_term(Term::from_field_text(self.fields.key, key));
            }
            for cap in &upserts {
                writer.delete_term(Term::from_field_text(self.fields.key, &cap.key));
                writer.add_document(self.fields.document(cap)?)?;
            }
            commit(writer, catalog_version)
        })();
        if result.is_ok() && compaction_due(upserts.len() + removes.len(), self.num_docs()) {
            compact(&self.index, writer);
        }
        if let Err(e) = result {
            // Drop queued operations so a later commit cannot publish half of this batch.
            writer.rollback()?;
            return Err(e);
        }
        let ranker = self.snapshot().ranker.clone();
        self.refresh(ranker)
    }

    /// Replaces the whole content with `all` and commits it with `catalog_version`.
    ///
    /// Searches keep seeing the previous content until the commit. Uses a multi-threaded
    /// writer with a larger memory budget and merges the result into one segment. Returns the
    /// number of documents indexed.
    pub fn rebuild(
        &self,
        all: impl IntoIterator<Item = IndexedCapability>,
        catalog_version: u64,
    ) -> Result<usize> {
        let mut guard = lock(&self.writer);
        // Only one writer may exist per index: release the incremental one first.
        drop(guard.take());
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, BULK_MAX_THREADS);
        let mut bulk: IndexWriter = self
            .index
            .writer_with_num_threads(threads, threads * BULK_WRITER_BYTES_PER_THREAD)?;
        bulk.set_merge_policy(Box::new(NoMergePolicy));
        let outcome = (|| -> Result<usize> {
            bulk.delete_all_documents()?;
            let mut count = 0usize;
            for cap in all {
                bulk.add_document(self.fields.document(&cap)?)?;
                count += 1;
            }
            commit(&mut bulk, catalog_version)?;
            let segments = self.index.searchable_segment_ids()?;
            if segments.len() > 1 {
                bulk.merge(&segments).wait()?;
            }
            Ok(count)
        })();
        if outcome.is_err() {
            bulk.rollback()?;
        }
        bulk.wait_merging_threads()?;
        *guard = Some(incremental_writer(&self.index)?);
        let count = outcome?;
        let ranker = self.snapshot().ranker.clone();
        self.refresh(ranker)?;
        Ok(count)
    }

    fn writer_in<'g>(&self, guard: &'g mut Option<IndexWriter>) -> Result<&'g mut IndexWriter> {
        if guard.is_none() {
            *guard = Some(incremental_writer(&self.index)?);
        }
        guard
            .as_mut()
            .ok_or_else(|| IndexError::Stored("writer unavailable".into()))
    }
}

/// Whether an apply of `changed` documents to an index of `docs` documents is large enough to
/// merge every segment afterwards (see [`compact`]).
fn compaction_due(changed: usize, docs: u64) -> bool {
    changed as u64 >= COMPACT_MIN_CHANGES && changed as u64 * COMPACT_FRACTION >= docs
}

/// Merges every searchable segment into one, waiting for it.
///
/// A large apply (the startup reputation recompute rewrites every key) leaves its documents in
/// several segments of the one-thread writer, which the log merge policy never merges (fewer
/// than 8 per level): every search then pays each leaf's setup and postings walk once per
/// segment, and the term statistics keep counting the replaced documents. One segment is what a
/// rebuild produces. Failure only costs speed (the commit already happened), so it is logged.
fn compact(index: &tantivy::Index, writer: &mut IndexWriter) {
    let merged = index
        .searchable_segment_ids()
        .map_err(IndexError::from)
        .and_then(|segments| {
            if segments.len() > 1 {
                writer.merge(&segments).wait()?;
            }
            Ok(())
        });
    if let Err(e) = merged {
        tracing::warn!(error = %e, "index: merging segments after a large apply failed");
    }
}

fn incremental_writer(index: &tantivy::Index) -> Result<IndexWriter> {
    let writer: IndexWriter = index.writer_with_num_threads(1, INCREMENTAL_WRITER_BYTES)?;
    writer.set_merge_policy(Box::new(LogMergePolicy::default()));
    Ok(writer)
}

fn commit(writer: &mut IndexWriter, catalog_version: u64) -> Result<()> {
    let payload = serde_json::to_string(&CommitPayload {
        format: FORMAT_VERSION,
        catalog_version,
    })?;
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&payload);
    prepared.commit()?;
    Ok(())
}

fn read_version(index: &tantivy::Index) -> Result<Option<u64>> {
    let metas = index.load_metas()?;
    Ok(metas
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<CommitPayload>(p).ok())
        .filter(|p| p.format == FORMAT_VERSION)
        .map(|p| p.catalog_version))
}

/// Distinct values of the `hub` fast field over live documents.
fn distinct_hubs(segments: &[SegmentReader]) -> Result<usize> {
    let mut hubs: HashSet<String> = HashSet::new();
    for segment in segments {
        let Some(column) = segment.fast_fields().str(HUB)? else {
            continue;
        };
        // Ords are dense (0..num_terms): a flag per ord, not a hash set per document, since
        // this runs after every commit over every live document of a segment with deletes.
        let terms = column.num_terms();
        let mut used = vec![false; terms];
        match segment.alive_bitset() {
            None => used.iter_mut().for_each(|u| *u = true),
            Some(alive) => {
                let ords = column.ords();
                for doc in alive.iter_alive() {
                    for ord in ords.values_for_doc(doc) {
                        if let Some(u) = usize::try_from(ord).ok().and_then(|o| used.get_mut(o)) {
                            *u = true;
                        }
                    }
                }
            }
        }
        let ords = used.iter().enumerate().filter(|(_, u)| **u);
        for (ord, _) in ords {
            let ord = ord as u64;
            let mut hub = String::new();
            column
                .ord_to_str(ord, &mut hub)
                .map_err(TantivyError::from)?;
            hubs.insert(hub);
        }
    }
    Ok(hubs.len())
}

/// Deletes the files of a broken index so a fresh one can be created in `dir`.
fn wipe(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        if entry.file_type().map_err(io_error(dir))?.is_dir() {
            return Err(IndexError::NotAnIndexDirectory(dir.to_path_buf()));
        }
        files.push(entry.path());
    }
    for file in files {
        std::fs::remove_file(&file).map_err(io_error(&file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::SearchQuery;

    /// A browse that arrives while the background sort still runs scans the segment; it
    /// must rank exactly as the sorted order does (the same page, filtered or not).
    #[test]
    fn browsing_before_the_sort_ends_gives_the_sorted_answer() {
        let index = Index::in_ram().unwrap();
        index
            .rebuild(crate::synthetic::catalog(2_000, 7), 1)
            .unwrap();
        let browse = |budget: Option<f64>, offset: usize| SearchQuery {
            intent: String::new(),
            budget,
            limit: 15,
            offset,
            ..SearchQuery::default()
        };
        let queries = [browse(None, 0), browse(None, 30), browse(Some(0.01), 0)];
        let sorted: Vec<_> = queries.iter().map(|q| index.search(q).unwrap()).collect();
        // Fresh signals whose sort a (pretend) background thread has taken and not finished.
        let snapshot = index.snapshot();
        let mut signals = HashMap::new();
        for segment in snapshot.searcher.segment_readers() {
            let fresh = SegmentSignals::load(segment, snapshot.ranker.as_ref()).unwrap();
            fresh.pretend_sorting();
            assert!(fresh.browse_order_now().is_none());
            signals.insert(segment.segment_id(), fresh);
        }
        *index.snapshot.write().unwrap() = Arc::new(Snapshot {
            searcher: snapshot.searcher.clone(),
            signals,
            ranker: snapshot.ranker.clone(),
            hubs: snapshot.hubs,
            version: snapshot.version,
            aliases: snapshot.aliases.clone(),
        });
        for (query, expected) in queries.iter().zip(&sorted) {
            let scanned = index.search(query).unwrap();
            assert_eq!(&scanned, expected);
            assert!(!scanned.matches.is_empty());
        }
    }

    #[test]
    fn only_large_applies_merge_every_segment() {
        // The startup reputation recompute rewrites every key: merge.
        assert!(compaction_due(100_000, 100_000));
        assert!(compaction_due(1_000, 10_000));
        // Under a tenth of the index, or a small batch on a small index: the log policy.
        assert!(!compaction_due(1_000, 10_001));
        assert!(!compaction_due(999, 5_000));
        assert!(!compaction_due(100, 100));
    }
}
