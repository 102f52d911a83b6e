//! The manifest kept in parts, so that a catalog change costs work in proportion to what
//! changed rather than to the catalog (issue 15: "searchable + published" within 50 ms at
//! 10k capabilities, 1 s at 100k).
//!
//! Tools are grouped into segments by store row id (`id >> SEGMENT_BITS`: a tool's segment
//! depends on its id alone, so a full build and any sequence of incremental updates group the
//! same tools the same way). Each segment keeps, compressed (issue 18: at a million tools the
//! raw JSON and canonicals were 1.6 GB of heap):
//! - its tools' JSON joined by `,` (a slice of the body) as raw deflate, ended by a sync flush
//!   so compressed segments concatenate into one valid deflate stream (what `pigz` does): the
//!   gzip body as is, and the identity body when inflated while it is streamed; with its
//!   CRC-32 (combined, never re-read, for the gzip trailer);
//! - its tools' Python-default canonicals joined by `", "`, deflated at the fastest level,
//!   and the SHA-256 state of the `tools` digest after it, so a change re-hashes (inflating
//!   as it goes) from its segment on, not from the start.
//!
//! A change rebuilds only the segments holding changed ids; publishing then concatenates
//! (by reference: the body and its gzip copy are lists of shared chunks) and signs. The
//! `tools` digest covers the whole array by protocol (spec §7.3.2), so hashing from the first
//! changed segment to the end is the one cost that stays proportional to the catalog.
//! `by_hub` is recomputed from the kept per-tool numbers in id order, exactly as a full build
//! sums them, so the document is byte-identical to a full rebuild (a unit test checks it).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::write::DeflateEncoder;
use flate2::{Compression, Decompress, FlushDecompress};
use sha2::{Digest, Sha256};

use super::CatalogError;
use super::body::Piece;

/// Row ids per segment are `2^SEGMENT_BITS` (256 ids: about 200 KB of JSON, a few
/// milliseconds to compress).
const SEGMENT_BITS: u32 = 8;

fn segment_of(id: i64) -> i64 {
    id >> SEGMENT_BITS
}

/// One tool built from a store row, ready to be placed.
#[derive(Debug)]
pub(super) struct BuiltTool {
    /// Store row id (the manifest's order).
    pub id: i64,
    /// The catalog key (`IndexedCapability::make_key`).
    pub key: String,
    /// Owning origin (`by_hub`).
    pub origin: String,
    /// Listing peer (its last successful crawl counts as a confirmation).
    pub peer_id: i64,
    /// Effective trust score.
    pub trust: f64,
    /// When the listing was last confirmed, as read.
    pub last_seen: i64,
    /// The tool as compact JSON.
    pub json: Vec<u8>,
    /// The tool's Python-default canonical.
    pub canonical: Vec<u8>,
}

/// A placed tool: its numbers and where its bytes are in its segment (offsets into the
/// segment's inflated JSON and canonical; a segment is far below 4 GiB).
#[derive(Debug, Clone)]
pub(super) struct Tool {
    id: i64,
    pub origin: Arc<str>,
    pub peer_id: i64,
    pub trust: f64,
    pub last_seen: i64,
    json: (u32, u32),
    canonical: (u32, u32),
}

struct Segment {
    tools: Vec<Tool>,
    /// The tools' JSON joined by `,`, raw deflate (sync flush).
    deflate: Bytes,
    /// Length of the JSON `deflate` inflates to.
    json_len: usize,
    /// The tools' canonicals joined by `", "`, raw deflate at the fastest level.
    canonical: Bytes,
    /// Length of the canonicals `canonical` inflates to.
    canonical_len: usize,
    /// CRC-32 of the JSON.
    crc: u32,
    /// SHA-256 state of `[` and every canonical up to the end of this segment; `None` until
    /// computed after a change at or before it.
    digest: Option<Sha256>,
}

/// The kept parts' memory, by kind ([`Parts::held_bytes`]).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HeldBytes {
    /// The tools' JSON, deflated.
    pub json_deflated: usize,
    /// The tools' canonicals, deflated.
    pub canonical_deflated: usize,
    /// The per-tool records.
    pub tools: usize,
    /// The key index.
    pub keys: usize,
}

/// A pending change of one row id.
#[derive(Debug)]
enum Change {
    Put(BuiltTool),
    Remove,
}

/// The manifest's tools in parts (module docs).
#[derive(Default)]
pub(super) struct Parts {
    segments: BTreeMap<i64, Segment>,
    /// Catalog key (as [`key_digest`]) → row id of every placed (or pending) tool: 16
    /// bytes a key instead of the key's text (about 100 MB less at a million tools).
    keys: HashMap<KeyDigest, i64>,
    origins: HashMap<String, Arc<str>>,
    pending: BTreeMap<i64, BTreeMap<i64, Change>>,
    /// The catalog version these parts show.
    pub version: i64,
}

/// Raw deflate of `data` by a fresh compressor, ended by a sync flush (byte-aligned, not
/// final), or by the final block when `last`.
pub(super) fn deflate(data: &[u8], last: bool) -> Result<Vec<u8>, CatalogError> {
    deflate_at(data, last, Compression::default())
}

fn in_memory_error(source: std::io::Error) -> CatalogError {
    CatalogError::Io {
        path: "manifest.gz (in memory)".into(),
        source,
    }
}

fn deflate_at(data: &[u8], last: bool, level: Compression) -> Result<Vec<u8>, CatalogError> {
    let io = in_memory_error;
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(data.len() / 5 + 64), level);
    encoder.write_all(data).map_err(io)?;
    let mut out = if last {
        encoder.finish().map_err(io)?
    } else {
        // `flush` is a sync flush; the final block `drop` would add is written to the
        // emptied buffer and discarded.
        encoder.flush().map_err(io)?;
        std::mem::take(encoder.get_mut())
    };
    // Kept for as long as the segment lives: without this, the spare capacity of the grown
    // buffer (up to as much again) stays allocated with it.
    out.shrink_to_fit();
    Ok(out)
}

/// Inflates a piece [`deflate`] made (a sync-flushed raw deflate from a fresh compressor,
/// so it decodes alone) back to its `len` bytes.
pub(super) fn inflate(data: &[u8], len: usize) -> Result<Vec<u8>, CatalogError> {
    let broken = |what: String| in_memory_error(std::io::Error::other(what));
    let mut out = Vec::with_capacity(len);
    let mut decoder = Decompress::new(false);
    // Bounded: each round either consumes input or fills the (fixed) buffer.
    while decoder.total_in() < data.len() as u64 && out.len() < len {
        let consumed = usize::try_from(decoder.total_in()).unwrap_or(data.len());
        let before = (decoder.total_in(), out.len());
        decoder
            .decompress_vec(&data[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|e| broken(e.to_string()))?;
        if (decoder.total_in(), out.len()) == before {
            break;
        }
    }
    if out.len() != len {
        return Err(broken(format!(
            "a manifest piece inflated to {} bytes, not {len}",
            out.len()
        )));
    }
    // What is left (unread input, or output the decoder holds back) may only be the sync
    // flush's empty block: one more byte of data means a wrong length.
    let consumed = usize::try_from(decoder.total_in()).unwrap_or(data.len());
    let rest = data.get(consumed..).unwrap_or_default();
    let mut extra = Vec::with_capacity(1);
    decoder
        .decompress_vec(rest, &mut extra, FlushDecompress::Sync)
        .map_err(|e| broken(e.to_string()))?;
    if !extra.is_empty() {
        return Err(broken(format!(
            "a manifest piece inflates to more than {len} bytes"
        )));
    }
    Ok(out)
}

fn crc_of(data: &[u8]) -> crc32fast::Hasher {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    crc
}

/// A catalog key as the parts index it: the first 16 bytes of its SHA-256 (two keys
/// colliding is a 2^-64 event even among 2^32 keys).
type KeyDigest = [u8; 16];

fn key_digest(key: &str) -> KeyDigest {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Bytes `range` of `data` (an offset pair of a kept tool).
fn slice(data: &[u8], (start, end): (u32, u32)) -> Result<&[u8], CatalogError> {
    data.get(start as usize..end as usize).ok_or_else(|| {
        in_memory_error(std::io::Error::other(
            "a kept tool lies outside its segment",
        ))
    })
}

/// An offset inside one segment.
fn offset(at: usize) -> Result<u32, CatalogError> {
    u32::try_from(at).map_err(|_| {
        in_memory_error(std::io::Error::other(
            "a manifest segment is larger than 4 GiB",
        ))
    })
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("tools", &self.keys.len())
            .field("segments", &self.segments.len())
            .field("version", &self.version)
            .finish()
    }
}

impl Parts {
    /// No tools yet, at catalog `version`.
    pub fn at(version: i64) -> Self {
        Self {
            version,
            ..Self::default()
        }
    }

    /// Number of tools placed (and pending).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// What the kept segments hold: compressed JSON bytes, compressed canonical bytes, and
    /// the bytes of the per-tool records and the key index (lower bounds: the key index's
    /// spare buckets and the origin table are not counted).
    pub fn held_bytes(&self) -> HeldBytes {
        let mut held = HeldBytes::default();
        for segment in self.segments.values() {
            held.json_deflated += segment.deflate.len();
            held.canonical_deflated += segment.canonical.len();
            held.tools += segment.tools.capacity() * std::mem::size_of::<Tool>();
        }
        held.keys = self.keys.capacity() * (std::mem::size_of::<(KeyDigest, i64)>() + 1);
        held
    }

    /// Places (or replaces) a tool. A key now held under another row id leaves that id.
    pub fn put(&mut self, tool: BuiltTool) {
        if let Some(old) = self.keys.insert(key_digest(&tool.key), tool.id)
            && old != tool.id
        {
            self.change(old, Change::Remove);
        }
        self.change(tool.id, Change::Put(tool));
    }

    /// Removes the tool of `key`, if placed.
    pub fn remove_key(&mut self, key: &str) {
        if let Some(id) = self.keys.remove(&key_digest(key)) {
            self.change(id, Change::Remove);
        }
    }

    fn change(&mut self, id: i64, change: Change) {
        self.pending
            .entry(segment_of(id))
            .or_default()
            .insert(id, change);
    }

    /// Rebuilds the segments with pending changes below segment `limit` (all with `None`).
    /// A full build calls it after each store page (pages come in id order, so those segments
    /// are complete), which keeps only one page of built tools in memory.
    pub fn flush(&mut self, limit: Option<i64>) -> Result<(), CatalogError> {
        let ready = match limit {
            Some(limit) => {
                let rest = self.pending.split_off(&limit);
                std::mem::replace(&mut self.pending, rest)
            }
            None => std::mem::take(&mut self.pending),
        };
        let Some(&first) = ready.keys().next() else {
            return Ok(());
        };
        for (segment, changes) in ready {
            let old = self.segments.remove(&segment);
            if let Some(rebuilt) = self.rebuild(old, changes)? {
                self.segments.insert(segment, rebuilt);
            }
        }
        // Every digest from the first changed segment on depends on it.
        for (_, segment) in self.segments.range_mut(first..) {
            segment.digest = None;
        }
        Ok(())
    }

    /// The segment of row id `id` (full builds flush below it after each page).
    pub fn segment_of(id: i64) -> i64 {
        segment_of(id)
    }

    fn intern(&mut self, origin: String) -> Arc<str> {
        if let Some(found) = self.origins.get(&origin) {
            return Arc::clone(found);
        }
        let interned: Arc<str> = origin.as_str().into();
        self.origins.insert(origin, Arc::clone(&interned));
        interned
    }

    fn rebuild(
        &mut self,
        old: Option<Segment>,
        mut changes: BTreeMap<i64, Change>,
    ) -> Result<Option<Segment>, CatalogError> {
        enum Entry {
            Old(Tool),
            New(BuiltTool),
        }
        // The kept tools' bytes are sliced from their segment, inflated once for the rebuild.
        let (old_tools, old_json, old_canonical) = match old {
            Some(s) => (
                s.tools,
                inflate(&s.deflate, s.json_len)?,
                inflate(&s.canonical, s.canonical_len)?,
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let mut merged: BTreeMap<i64, Entry> = old_tools
            .into_iter()
            .map(|t| (t.id, Entry::Old(t)))
            .collect();
        for (id, change) in std::mem::take(&mut changes) {
            match change {
                Change::Put(tool) => merged.insert(id, Entry::New(tool)),
                Change::Remove => merged.remove(&id),
            };
        }
        if merged.is_empty() {
            return Ok(None);
        }
        let mut tools = Vec::with_capacity(merged.len());
        let mut json = Vec::with_capacity(old_json.len() + 1024);
        let mut canonical = Vec::with_capacity(old_canonical.len() + 1024);
        for entry in merged.into_values() {
            if !tools.is_empty() {
                json.push(b',');
                canonical.extend_from_slice(b", ");
            }
            let (j0, c0) = (json.len(), canonical.len());
            let tool = match entry {
                Entry::Old(tool) => {
                    json.extend_from_slice(slice(&old_json, tool.json)?);
                    canonical.extend_from_slice(slice(&old_canonical, tool.canonical)?);
                    tool
                }
                Entry::New(built) => {
                    json.extend_from_slice(&built.json);
                    canonical.extend_from_slice(&built.canonical);
                    Tool {
                        id: built.id,
                        origin: self.intern(built.origin),
                        peer_id: built.peer_id,
                        trust: built.trust,
                        last_seen: built.last_seen,
                        json: (0, 0),
                        canonical: (0, 0),
                    }
                }
            };
            tools.push(Tool {
                json: (offset(j0)?, offset(json.len())?),
                canonical: (offset(c0)?, offset(canonical.len())?),
                ..tool
            });
        }
        Ok(Some(Segment {
            tools,
            deflate: deflate(&json, false)?.into(),
            json_len: json.len(),
            canonical: deflate_at(&canonical, false, Compression::fast())?.into(),
            canonical_len: canonical.len(),
            crc: crc_of(&json).finalize(),
            digest: None,
        }))
    }

    /// Every placed tool in manifest order.
    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.segments.values().flat_map(|s| &s.tools)
    }

    /// The hex SHA-256 of the `tools` array's canonical, re-hashing from the first segment
    /// without a kept digest. Call after [`Parts::flush`].
    pub fn tools_hash(&mut self) -> Result<String, CatalogError> {
        let mut before: Option<Sha256> = None;
        for (i, segment) in self.segments.values_mut().enumerate() {
            if let Some(digest) = &segment.digest {
                before = Some(digest.clone());
                continue;
            }
            let mut digest = before.take().unwrap_or_else(|| {
                let mut start = Sha256::new();
                start.update(b"[");
                start
            });
            if i > 0 {
                digest.update(b", ");
            }
            digest.update(inflate(&segment.canonical, segment.canonical_len)?);
            segment.digest = Some(digest.clone());
            before = Some(digest);
        }
        let mut digest = before.unwrap_or_else(|| {
            let mut start = Sha256::new();
            start.update(b"[");
            start
        });
        digest.update(b"]");
        Ok(hex::encode(digest.finalize()))
    }

    /// The body: `prefix`, the segments' JSON joined by `,`, `suffix` (shared pieces; the
    /// segments' are inflated as they are streamed).
    pub fn body(&self, prefix: Bytes, suffix: Bytes) -> Vec<Piece> {
        let mut parts = Vec::with_capacity(self.segments.len() * 2 + 2);
        parts.push(Piece::Raw(prefix));
        for (i, segment) in self.segments.values().enumerate() {
            if i > 0 {
                parts.push(Piece::Raw(Bytes::from_static(b",")));
            }
            parts.push(Piece::Deflated {
                data: segment.deflate.clone(),
                len: segment.json_len,
            });
        }
        parts.push(Piece::Raw(suffix));
        parts
    }

    /// The gzip member of the same body: header, deflated pieces in order (the segments' kept
    /// ones), the final piece, CRC-32 and length.
    pub fn gzip(&self, prefix: &[u8], suffix: &[u8]) -> Result<Vec<Bytes>, CatalogError> {
        // RFC 1952 header: deflate, no flags, no mtime, unknown OS.
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let comma: Bytes = deflate(b",", false)?.into();
        let comma_crc = crc_of(b",");
        let mut crc = crc_of(prefix);
        let mut parts = Vec::with_capacity(self.segments.len() * 2 + 4);
        parts.push(Bytes::from_static(&HEADER));
        parts.push(deflate(prefix, false)?.into());
        for (i, segment) in self.segments.values().enumerate() {
            if i > 0 {
                parts.push(comma.clone());
                crc.combine(&comma_crc);
            }
            parts.push(segment.deflate.clone());
            let len = segment.json_len as u64;
            crc.combine(&crc32fast::Hasher::new_with_initial_len(segment.crc, len));
        }
        parts.push(deflate(suffix, true)?.into());
        crc.update(suffix);
        let length = crc.total_len();
        let mut trailer = crc.finalize().to_le_bytes().to_vec();
        // ISIZE is the length modulo 2^32 (RFC 1952).
        trailer.extend_from_slice(&((length & 0xffff_ffff) as u32).to_le_bytes());
        parts.push(trailer.into());
        Ok(parts)
    }
}
