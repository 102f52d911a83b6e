//! The crawl itself (spec §2.2): breadth-first from the seeds over each well-known's
//! `peers[].url` and `federation.seed_list`, level by level so every peer is reached at its
//! shortest depth, with bounded parallelism and bounded growth.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream;
use tracing::Instrument as _;

use crate::catalog::VerifiedCatalog;
use crate::error::{CrawlError, Document};
use crate::fetch::{FetchOptions, Fetched, Fetcher, MANIFEST_LIMIT, Validators, WELL_KNOWN_LIMIT};
use crate::url_safety::{SafeUrl, UrlError, UrlPolicy};
use crate::verify::{
    DEFAULT_MANIFEST_PATH, V2_MANIFEST_PATH, VerifyOptions, WELL_KNOWN_PATH, WellKnown,
    parse_well_known, verify_catalog,
};

/// A starting point of a crawl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSpec {
    /// A hub origin (`https://hub.example.com`) or the URL of its well-known document.
    pub url: String,
    /// Key to pin this peer to (operator `URL=KEY`); overrides any stored pin.
    pub pinned_key: Option<String>,
    /// Configured by the operator: exempt from the address-range rule (spec §7.4 applies to
    /// URLs *not* configured by the operator). Pass `false` for peers the hub only learned
    /// about (re-crawling stored gossip peers).
    pub operator: bool,
}

impl SeedSpec {
    /// Parses an operator seed `URL` or `URL=KEY` (the CLI `--seed` form). Base64 keys end in
    /// `=` and URLs may contain `=`, so the split is at the first `=` whose remainder is a
    /// valid Ed25519 key; with none, the whole argument is the URL.
    pub fn parse_operator(arg: &str) -> Self {
        let split = arg.match_indices('=').find_map(|(i, _)| {
            let key = &arg[i + 1..];
            aimarket_protocol::signing::PublicKey::from_b64(key)
                .is_ok()
                .then(|| (arg[..i].to_owned(), key.to_owned()))
        });
        let (url, pinned_key) = match split {
            Some((url, key)) => (url, Some(key)),
            None => (arg.to_owned(), None),
        };
        Self {
            url,
            pinned_key,
            operator: true,
        }
    }
}

/// What the hub already knows about a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeer {
    /// The pinned signer key, if any.
    pub pinned_key: Option<String>,
    /// Validators of the last well-known answer.
    pub well_known: Validators,
    /// Validators of the last manifest answer.
    pub manifest: Validators,
    /// Manifest URL used last time: needed when the well-known answers 304 or is skipped.
    pub manifest_url: Option<String>,
    /// When this peer's well-known last answered (200 or 304). Within
    /// [`CrawlConfig::well_known_refresh`] of it, a peer with a remembered manifest URL and
    /// manifest validators is checked with one conditional manifest request alone.
    pub well_known_checked_at: Option<DateTime<Utc>>,
}

/// Lookup of stored peer state by peer origin (`scheme://host[:port]`). Called from the
/// crawl's task for every peer; the hub loads its peers table into memory first (a
/// `HashMap<String, KnownPeer>` implements this).
pub trait KnownPeers: Send + Sync {
    /// State for `peer_url`, if the hub knows the peer.
    fn lookup(&self, peer_url: &str) -> Option<KnownPeer>;
}

impl KnownPeers for HashMap<String, KnownPeer> {
    fn lookup(&self, peer_url: &str) -> Option<KnownPeer> {
        self.get(peer_url).cloned()
    }
}

/// Conditional-request state to store for a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerValidators {
    /// For the well-known.
    pub well_known: Validators,
    /// For the manifest.
    pub manifest: Validators,
}

/// What happened to one peer.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerOutcome {
    /// A verified catalog (possibly with individually rejected tools).
    Updated(Box<VerifiedCatalog>, PeerValidators),
    /// The manifest answered 304: the stored catalog is current.
    NotModified(PeerValidators),
    /// Nothing usable; the stored catalog, if any, must stay.
    Failed(CrawlError),
}

/// One peer of a crawl.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerResult {
    /// Peer origin (its identity); the seed as given when it did not parse.
    pub url: String,
    /// Well-known URL fetched.
    pub well_known_url: String,
    /// 0 for seeds.
    pub depth: u8,
    /// Origin of the peer whose well-known listed this one (`None` for seeds).
    pub discovered_from: Option<String>,
    /// True for operator seeds.
    pub operator: bool,
    /// True when the peer's well-known was requested in this crawl and answered (200 or
    /// 304); false when it was skipped within the refresh window, or the crawl failed first.
    /// The hub records the time for [`KnownPeer::well_known_checked_at`].
    pub well_known_checked: bool,
    /// The result.
    pub outcome: PeerOutcome,
}

/// Summary of a crawl.
#[derive(Debug, Clone, PartialEq)]
pub struct CrawlReport {
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: DateTime<Utc>,
    /// Every peer attempted, level by level.
    pub peers: Vec<PeerResult>,
    /// Discovered peers not crawled because the total cap was reached.
    pub dropped_by_cap: usize,
    /// Discovered peers not crawled because they are beyond the maximum depth.
    pub beyond_depth: usize,
}

impl CrawlReport {
    /// Peers with a new verified catalog.
    pub fn updated(&self) -> usize {
        self.count(|o| matches!(o, PeerOutcome::Updated(..)))
    }
    /// Peers whose manifest answered 304.
    pub fn not_modified(&self) -> usize {
        self.count(|o| matches!(o, PeerOutcome::NotModified(..)))
    }
    /// Peers that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, PeerOutcome::Failed(..)))
    }
    /// Capabilities across all updated peers.
    pub fn capabilities(&self) -> usize {
        self.peers
            .iter()
            .map(|p| match &p.outcome {
                PeerOutcome::Updated(c, _) => c.tools.len(),
                _ => 0,
            })
            .sum()
    }
    fn count(&self, f: impl Fn(&PeerOutcome) -> bool) -> usize {
        self.peers.iter().filter(|p| f(&p.outcome)).count()
    }
}

/// Progress notifications, for a progress bar or logs.
#[derive(Debug, Clone, PartialEq)]
pub enum CrawlEvent {
    /// A peer is being crawled; `known` is the number of peers queued so far in this crawl.
    PeerStarted {
        /// Peer origin.
        url: String,
        /// Its depth.
        depth: u8,
        /// Peers queued so far (the progress bar's length).
        known: usize,
    },
    /// A peer is done: `status` is `"updated"`, `"not_modified"` or a [`CrawlError::code`].
    PeerFinished {
        /// Peer origin.
        url: String,
        /// `updated`, `not_modified` or an error code.
        status: &'static str,
    },
}

/// Crawl settings.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// Deepest level crawled (seeds are depth 0). Default 3 (spec §2.2).
    pub max_depth: u8,
    /// Most peers attempted per crawl, seeds included. Default 5,000.
    pub max_peers: usize,
    /// Peers crawled at once. Default 8 (per-host limits apply on top).
    pub parallelism: usize,
    /// Cap for well-known bodies. Default 256 KiB.
    pub well_known_limit: usize,
    /// Cap for manifest bodies. Default 4 MiB.
    pub manifest_limit: usize,
    /// Verification settings (freshness, per-well-known discovery cap, own origin). Its
    /// `policy` is overwritten with the fetcher's by [`Crawler::new`].
    pub verify: VerifyOptions,
    /// How long a peer's well-known may go unchecked while its manifest answers 304.
    /// Default 6 hours.
    ///
    /// A known peer (remembered manifest URL and manifest validators, well-known checked
    /// within this window) costs one conditional manifest request per crawl. Its well-known
    /// is fetched again when the manifest changed (unconditionally: the hub keeps no copy of
    /// it, and the key, name and peers list describe the new catalog) or when the window has
    /// passed (conditionally). Trade-off: the peers list of an unchanged peer is read at most
    /// this often, so peer discovery through it is delayed by up to this long.
    pub well_known_refresh: Duration,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        Self {
            max_depth: 3,
            max_peers: 5000,
            parallelism: 8,
            well_known_limit: WELL_KNOWN_LIMIT,
            manifest_limit: MANIFEST_LIMIT,
            verify: VerifyOptions::default(),
            well_known_refresh: DEFAULT_WELL_KNOWN_REFRESH,
        }
    }
}

/// Default of [`CrawlConfig::well_known_refresh`]: 6 hours.
pub const DEFAULT_WELL_KNOWN_REFRESH: Duration = Duration::from_secs(6 * 3600);

/// A peer to crawl.
#[derive(Debug, Clone)]
struct Target {
    well_known: SafeUrl,
    pinned_key: Option<String>,
    operator: bool,
    depth: u8,
    discovered_from: Option<String>,
}

impl Target {
    /// Whether `url` is exempt from the address-range rule: only an operator seed's own
    /// origin (scheme, host and port) is; every other URL it leads to (a `manifest_url`, a
    /// stored one, a redirect) passes the full §7.4 check.
    fn operator_exempt(&self, url: &SafeUrl) -> bool {
        self.operator && url.same_origin(&self.well_known)
    }
}

/// Output of one peer's crawl, before it is reported.
struct PeerRun {
    outcome: PeerOutcome,
    /// Discovered URLs, only from peers whose catalog verified or was current.
    discovered: Vec<SafeUrl>,
    /// The well-known was requested and answered.
    well_known_checked: bool,
}

/// The federation crawler. Holds no peer state between crawls (that is the hub's store);
/// per-host politeness state lives in the shared [`Fetcher`].
#[derive(Debug, Clone)]
pub struct Crawler {
    fetcher: Arc<Fetcher>,
    config: CrawlConfig,
}

impl Crawler {
    /// A crawler over `fetcher`. The URL policy for URLs found in documents
    /// (`config.verify.policy`) is taken from the fetcher, so the two cannot disagree.
    pub fn new(fetcher: Arc<Fetcher>, mut config: CrawlConfig) -> Self {
        config.verify.policy = fetcher.config().policy;
        Self { fetcher, config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CrawlConfig {
        &self.config
    }

    /// The shared fetcher (for [`Fetcher::check_url`] on URLs about to be stored).
    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    /// Crawls from `seeds` without progress reporting.
    pub async fn crawl(&self, seeds: Vec<SeedSpec>, known: &dyn KnownPeers) -> CrawlReport {
        self.crawl_with_progress(seeds, known, &|_| {}).await
    }

    /// Crawls from `seeds`, calling `progress` as peers start and finish.
    pub async fn crawl_with_progress(
        &self,
        seeds: Vec<SeedSpec>,
        known: &dyn KnownPeers,
        progress: &(dyn Fn(CrawlEvent) + Send + Sync),
    ) -> CrawlReport {
        self.crawl_into(seeds, known, progress, Sink::Collect).await
    }

    /// Crawls from `seeds` and sends each peer's result to `results` as soon as that peer is
    /// done, so the caller can store one catalog while the next is fetched and verified, and
    /// never holds them all. The returned report has no `peers` (they went to `results`);
    /// its times and drop counts are filled. A full channel pauses the crawl (backpressure);
    /// a closed one ends it early.
    pub async fn crawl_streaming(
        &self,
        seeds: Vec<SeedSpec>,
        known: &dyn KnownPeers,
        progress: &(dyn Fn(CrawlEvent) + Send + Sync),
        results: &tokio::sync::mpsc::Sender<PeerResult>,
    ) -> CrawlReport {
        self.crawl_into(seeds, known, progress, Sink::Send(results))
            .await
    }

    async fn crawl_into(
        &self,
        seeds: Vec<SeedSpec>,
        known: &dyn KnownPeers,
        progress: &(dyn Fn(CrawlEvent) + Send + Sync),
        sink: Sink<'_>,
    ) -> CrawlReport {
        let started_at = Utc::now();
        let mut report = CrawlReport {
            started_at,
            finished_at: started_at,
            peers: Vec::new(),
            dropped_by_cap: 0,
            beyond_depth: 0,
        };
        let mut visited: HashSet<String> = self.config.verify.self_origin.iter().cloned().collect();
        let mut level = Vec::new();
        for seed in seeds {
            match self.seed_target(&seed) {
                Ok(t) => {
                    if visited.insert(t.well_known.origin()) {
                        level.push(t);
                    }
                }
                Err(reason) => {
                    let result = PeerResult {
                        url: seed.url.clone(),
                        well_known_url: seed.url.clone(),
                        depth: 0,
                        discovered_from: None,
                        operator: seed.operator,
                        well_known_checked: false,
                        outcome: PeerOutcome::Failed(CrawlError::UnsafeUrl {
                            url: seed.url.chars().take(200).collect(),
                            reason,
                        }),
                    };
                    if !sink.put(&mut report, result).await {
                        return report;
                    }
                }
            }
        }
        if level.len() > self.config.max_peers {
            report.dropped_by_cap += level.len() - self.config.max_peers;
            level.truncate(self.config.max_peers);
        }
        let mut queued = level.len();
        while !level.is_empty() {
            let known_now = queued;
            let mut runs = stream::iter(level)
                .map(|t| async move {
                    let url = t.well_known.origin();
                    progress(CrawlEvent::PeerStarted {
                        url: url.clone(),
                        depth: t.depth,
                        known: known_now,
                    });
                    let run = self.crawl_target(&t, known).await;
                    progress(CrawlEvent::PeerFinished {
                        url,
                        status: match &run.outcome {
                            PeerOutcome::Updated(..) => "updated",
                            PeerOutcome::NotModified(..) => "not_modified",
                            PeerOutcome::Failed(e) => e.code(),
                        },
                    });
                    (t, run)
                })
                .buffered(self.config.parallelism.max(1));
            let mut next = Vec::new();
            while let Some((target, run)) = runs.next().await {
                let from = target.well_known.origin();
                for url in run.discovered {
                    let target_url = well_known_for(&url);
                    if visited.contains(&target_url.origin()) {
                        continue;
                    }
                    if target.depth >= self.config.max_depth {
                        report.beyond_depth += 1;
                        continue;
                    }
                    if queued >= self.config.max_peers {
                        report.dropped_by_cap += 1;
                        continue;
                    }
                    visited.insert(target_url.origin());
                    queued += 1;
                    next.push(Target {
                        well_known: target_url,
                        pinned_key: None,
                        operator: false,
                        depth: target.depth + 1,
                        discovered_from: Some(from.clone()),
                    });
                }
                let result = PeerResult {
                    url: from,
                    well_known_url: target.well_known.to_string(),
                    depth: target.depth,
                    discovered_from: target.discovered_from,
                    operator: target.operator,
                    well_known_checked: run.well_known_checked,
                    outcome: run.outcome,
                };
                if !sink.put(&mut report, result).await {
                    report.finished_at = Utc::now();
                    return report;
                }
            }
            level = next;
        }
        report.finished_at = Utc::now();
        report
    }

    fn seed_target(&self, seed: &SeedSpec) -> Result<Target, UrlError> {
        let url = self.policy().parse(seed.url.trim(), seed.operator)?;
        Ok(Target {
            well_known: well_known_for(&url),
            pinned_key: seed.pinned_key.clone(),
            operator: seed.operator,
            depth: 0,
            discovered_from: None,
        })
    }

    fn policy(&self) -> UrlPolicy {
        self.config.verify.policy
    }

    /// Crawls a single peer (well-known, manifest, verification), e.g. to preview a pending
    /// peer (spec §2.6) or to check an announcement. `url` is the peer origin or its
    /// well-known URL; `operator` exempts it from the address-range rule.
    pub async fn crawl_peer(
        &self,
        url: &SafeUrl,
        operator: bool,
        known: Option<KnownPeer>,
    ) -> PeerOutcome {
        let target = Target {
            well_known: well_known_for(url),
            pinned_key: None,
            operator,
            depth: 0,
            discovered_from: None,
        };
        let one = OnePeer(known);
        self.crawl_target(&target, &one).await.outcome
    }

    async fn crawl_target(&self, t: &Target, known: &dyn KnownPeers) -> PeerRun {
        let origin = t.well_known.origin();
        let known = known.lookup(&origin).unwrap_or_default();
        // One span per peer (fetch, verify as children): the hub exports them as traces
        // when it is configured to; otherwise they cost a disabled-span check.
        let span = tracing::info_span!("crawl.peer", peer = %origin, depth = t.depth);
        match self.crawl_inner(t, &known).instrument(span).await {
            Ok(run) => run,
            Err(e) => PeerRun {
                outcome: PeerOutcome::Failed(e),
                discovered: Vec::new(),
                well_known_checked: false,
            },
        }
    }

    /// True when `known` lets this crawl skip the well-known: a remembered manifest URL with
    /// validators to ask about it conditionally, and a well-known checked within the refresh
    /// window (see [`CrawlConfig::well_known_refresh`]).
    fn well_known_is_recent(&self, known: &KnownPeer) -> bool {
        let window = chrono::Duration::from_std(self.config.well_known_refresh)
            .unwrap_or(chrono::Duration::MAX);
        known.manifest_url.is_some()
            && !known.manifest.is_empty()
            && known
                .well_known_checked_at
                .is_some_and(|at| Utc::now().signed_duration_since(at) < window)
    }

    async fn crawl_inner(&self, t: &Target, known: &KnownPeer) -> Result<PeerRun, CrawlError> {
        let pinned = t.pinned_key.as_deref().or(known.pinned_key.as_deref());
        let mut validators = PeerValidators {
            well_known: known.well_known.clone(),
            manifest: Validators::default(),
        };
        let skip_well_known = self.well_known_is_recent(known);
        let mut well_known_checked = !skip_well_known;
        let mut wk = if skip_well_known {
            None
        } else {
            match self
                .fetch(
                    &t.well_known,
                    Document::WellKnown,
                    &known.well_known,
                    t.operator,
                )
                .await?
            {
                Fetched::NotModified => None,
                body @ Fetched::Body { .. } => {
                    validators.well_known = body.validators();
                    Some(self.parse_wk(&body, t)?)
                }
            }
        };
        let manifest_url = match (&wk, &known.manifest_url) {
            (Some(w), _) => w.manifest_url.clone(),
            (None, Some(stored)) => {
                let exempt = |u: &SafeUrl| t.operator_exempt(u);
                SafeUrl::parse(stored)
                    .and_then(|u| self.policy().check(&u, exempt(&u)).map(|()| u))
                    .map_err(|reason| CrawlError::UnsafeUrl {
                        url: stored.clone(),
                        reason,
                    })?
            }
            (None, None) => {
                // 304 but nothing remembered to continue with: fetch it for real.
                let parsed = self.fresh_well_known(t, &mut validators).await?;
                well_known_checked = true;
                let url = parsed.manifest_url.clone();
                wk = Some(parsed);
                url
            }
        };
        // Validators belong to a URL: a moved manifest is fetched unconditionally.
        let manifest_validators = if known.manifest_url.as_deref() == Some(manifest_url.as_str()) {
            known.manifest.clone()
        } else {
            Validators::default()
        };
        let (manifest_url, fetched) = self
            .fetch_manifest(&manifest_url, &manifest_validators, t)
            .await?;
        let discovered = |wk: &Option<WellKnown>| {
            wk.as_ref()
                .map(|w| w.peers.iter().chain(&w.seed_list).cloned().collect())
                .unwrap_or_default()
        };
        let Fetched::Body { bytes, .. } = &fetched else {
            validators.manifest = manifest_validators;
            return Ok(PeerRun {
                discovered: discovered(&wk),
                outcome: PeerOutcome::NotModified(validators),
                well_known_checked,
            });
        };
        validators.manifest = fetched.validators();
        let wk = match wk {
            Some(wk) => wk,
            // The manifest changed under an unchanged (or unchecked) well-known: we still
            // need its key, name and peers, and keep no copy of it.
            None => {
                let parsed = self.fresh_well_known(t, &mut validators).await?;
                well_known_checked = true;
                parsed
            }
        };
        let catalog = tracing::info_span!("crawl.verify", bytes = bytes.len()).in_scope(|| {
            verify_catalog(
                &wk,
                &manifest_url,
                bytes,
                pinned,
                &self.config.verify,
                Utc::now(),
            )
        })?;
        Ok(PeerRun {
            discovered: discovered(&Some(wk)),
            outcome: PeerOutcome::Updated(Box::new(catalog), validators),
            well_known_checked,
        })
    }

    /// Fetches the well-known unconditionally (after a 304 left us without its content).
    async fn fresh_well_known(
        &self,
        t: &Target,
        validators: &mut PeerValidators,
    ) -> Result<WellKnown, CrawlError> {
        let body = self
            .fetch(
                &t.well_known,
                Document::WellKnown,
                &Validators::default(),
                t.operator,
            )
            .await?;
        validators.well_known = body.validators();
        self.parse_wk(&body, t)
    }

    fn parse_wk(&self, body: &Fetched, t: &Target) -> Result<WellKnown, CrawlError> {
        let Fetched::Body { bytes, .. } = body else {
            return Err(CrawlError::Http {
                status: 304,
                url: t.well_known.to_string(),
            });
        };
        // Parsed against the requested URL: the peer's identity is where we asked, not
        // where a redirect took us.
        parse_well_known(bytes, &t.well_known, t.operator, &self.config.verify)
    }

    /// Fetches the manifest; a 404 on the v1 default path retries the v2 path once.
    async fn fetch_manifest(
        &self,
        url: &SafeUrl,
        validators: &Validators,
        t: &Target,
    ) -> Result<(SafeUrl, Fetched), CrawlError> {
        let exempt = |u: &SafeUrl| t.operator_exempt(u);
        match self
            .fetch(url, Document::Manifest, validators, exempt(url))
            .await
        {
            Err(CrawlError::Http { status: 404, .. })
                if url.as_url().path() == DEFAULT_MANIFEST_PATH =>
            {
                let v2 = url.origin_url().join(V2_MANIFEST_PATH).map_err(|reason| {
                    CrawlError::UnsafeUrl {
                        url: url.to_string(),
                        reason,
                    }
                })?;
                let fetched = self
                    .fetch(&v2, Document::Manifest, &Validators::default(), exempt(&v2))
                    .await?;
                Ok((v2, fetched))
            }
            other => Ok((url.clone(), other?)),
        }
    }

    async fn fetch(
        &self,
        url: &SafeUrl,
        document: Document,
        validators: &Validators,
        operator: bool,
    ) -> Result<Fetched, CrawlError> {
        let mut opts = FetchOptions::new(document);
        opts.max_bytes = match document {
            Document::WellKnown => self.config.well_known_limit,
            Document::Manifest => self.config.manifest_limit,
        };
        opts.validators = validators.clone();
        opts.operator = operator;
        let span = tracing::info_span!("crawl.fetch", url = %url, document = ?document);
        self.fetcher.fetch(url, &opts).instrument(span).await
    }
}

/// Where finished peers go.
#[derive(Clone, Copy)]
enum Sink<'a> {
    /// Into the report.
    Collect,
    /// To the caller, one by one.
    Send(&'a tokio::sync::mpsc::Sender<PeerResult>),
}

impl Sink<'_> {
    /// Delivers `result`; false when the receiver is gone (the crawl should stop).
    async fn put(self, report: &mut CrawlReport, result: PeerResult) -> bool {
        match self {
            Sink::Collect => {
                report.peers.push(result);
                true
            }
            Sink::Send(tx) => tx.send(result).await.is_ok(),
        }
    }
}

/// [`KnownPeers`] for a single-peer crawl.
struct OnePeer(Option<KnownPeer>);

impl KnownPeers for OnePeer {
    fn lookup(&self, _peer_url: &str) -> Option<KnownPeer> {
        self.0.clone()
    }
}

/// A bare origin names the hub: its well-known is at the standard path. Any other URL is
/// taken to be the well-known document itself (seed lists carry those, spec §2.1).
pub fn well_known_for(url: &SafeUrl) -> SafeUrl {
    if url.is_bare_origin() {
        url.join(WELL_KNOWN_PATH).unwrap_or_else(|_| url.clone())
    } else {
        url.clone()
    }
}
