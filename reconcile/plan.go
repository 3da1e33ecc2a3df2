// Package reconcile turns what previewd observes (GitHub's open PRs, its own
// rows in PostgreSQL, the namespaces and Helm releases in the cluster) into a
// plan of actions (Plan, a pure function), and runs that plan (Executor).
package reconcile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

// PR is an open pull request as GitHub lists it.
type PR struct {
	Repo        string   `json:"repo"`
	Number      int      `json:"number"`
	Title       string   `json:"title"`
	Branch      string   `json:"branch"`
	SHA         string   `json:"sha"`
	Author      string   `json:"author,omitempty"`
	Draft       bool     `json:"draft,omitempty"`
	Fork        bool     `json:"fork,omitempty"`
	ForkDeleted bool     `json:"fork_deleted,omitempty"`
	Labels      []string `json:"labels,omitempty"`
	// RepoID is the id of the PR's base repository, which survives a
	// rename or transfer (0: unknown).
	RepoID int64 `json:"-"`
}

// Closed is a PR confirmed closed by a GET of that PR.
type Closed struct {
	Number int  `json:"number"`
	Merged bool `json:"merged"`
}

// RepoObservation is one repository's answer from GitHub for one cycle.
type RepoObservation struct {
	Repo string
	// Complete is true only when every page of the open-PR list was read
	// without error. An incomplete observation never leads to a deletion.
	Complete bool
	Err      error
	Open     []PR
	// Closed holds PRs absent from the open list whose closure was
	// confirmed by a GET; Unconfirmed holds those whose GET failed.
	Closed      []Closed
	Unconfirmed []int
	// Checks are the CI checks read on the head SHAs of open PRs that
	// wait for them (wait_for_checks), by PR number.
	Checks map[int]ChecksRead
}

// ChecksRead is one read of the checks on a PR's head SHA.
type ChecksRead struct {
	SHA    string
	Checks []Check
	// Err is why they could not be read; nothing is deployed then.
	Err error
}

// Observation is everything one cycle saw.
type Observation struct {
	Repos    []RepoObservation
	Previews []model.Preview
	Cluster  model.ClusterObservation
	// Charts are the digests of the repositories' charts, by repository
	// ("" when the chart could not be read: no drift is concluded).
	Charts map[string]string
	// OrphanSince is when previewd first noticed previews (records or
	// namespaces) of a repository that is not configured, by repository.
	OrphanSince map[string]time.Time
}

// Options are the plan's parameters; Now is the only clock.
type Options struct {
	Now         time.Time
	MaxAttempts int
	// LockStaleAfter is the age of a pending-* release that counts as an
	// interrupted operation (Settings.LockStaleAfter).
	LockStaleAfter time.Duration
	// Backoff is the wait after failed attempt n before attempt n+1.
	Backoff func(n int) time.Duration
	// ImageRecheck is when to look again for an image waited for since
	// waited ago.
	ImageRecheck func(waited time.Duration) time.Duration
	// MaxParallel bounds the upgrades for a configuration change planned
	// in one cycle (0: no bound).
	MaxParallel int
	// OrphanGrace is how long previews of a repository that is not
	// configured are kept after OrphanSince.
	OrphanGrace time.Duration
	Policies    map[string]RepoPolicy // by repo name
	// Digests identify each repository's value-producing settings (by
	// repo name); with the observed chart digest they make the deploy
	// fingerprint.
	Digests map[string]string
	// NamespaceFor maps a PR to its namespace name.
	NamespaceFor func(repo string, number int) string
	// CommentHash returns the hash of the comment body the preview's row
	// calls for; a differing stored hash plans a comment action.
	CommentHash func(p model.Preview) string
}

// Kind is what an action does.
type Kind string

// Action kinds, in the order they run for one PR.
const (
	KindUnlock  Kind = "unlock"  // uninstall a release stuck pending-*
	KindDeploy  Kind = "deploy"  // ensure namespace, install/upgrade at SHA, wait ready
	KindVerify  Kind = "verify"  // release already at SHA: only wait for readiness
	KindBlocked Kind = "blocked" // cannot deploy (foreign namespace): say why on the PR
	KindWait    Kind = "wait"    // not deployed yet (checks): record the wait, say why on the PR
	KindDelete  Kind = "delete"  // uninstall and delete the namespace, wait until gone
	KindForget  Kind = "forget"  // namespace already gone: mark the row deleted
	KindComment Kind = "comment" // bring the PR comment up to date
	KindRename  Kind = "rename"  // move the record and namespace to the repository's new name
)

var kindOrder = map[Kind]int{KindRename: 0, KindUnlock: 1, KindDeploy: 2, KindVerify: 3, KindBlocked: 4, KindWait: 5, KindDelete: 6, KindForget: 7, KindComment: 8}

// Action is one step of the plan.
type Action struct {
	Kind      Kind   `json:"action"`
	State     State  `json:"state"`
	Repo      string `json:"repo"`
	Number    int    `json:"pr"`
	Namespace string `json:"namespace"`
	FromSHA   string `json:"from_sha,omitempty"`
	SHA       string `json:"sha,omitempty"`
	// FromRepo is the old name a rename moves the preview from.
	FromRepo string `json:"from_repo,omitempty"`
	Reason   string `json:"reason"`
	// PR carries the open PR a deploy is for (branch, title).
	PR *PR `json:"-"`
	// Merged is set on deletions of merged PRs.
	Merged bool `json:"merged,omitempty"`
	// Attempt is which attempt of the retry budget a deploy or verify is
	// (1-based); RetryAfter is how long the retry after its failure waits
	// (0: it is the last). The plan owns the budget and the schedule; the
	// executor records them.
	Attempt    int           `json:"attempt,omitempty"`
	RetryAfter time.Duration `json:"-"`
	// ImageWaitUntil is until when an image-pull failure of the
	// preview's own image counts as "not pushed yet" (zero: it does not);
	// ImageRecheckAfter is when to look again after such a failure.
	ImageWaitUntil    time.Time     `json:"-"`
	ImageRecheckAfter time.Duration `json:"-"`
	// WaitingFor is what a wait action records (model.WaitingFor*);
	// Final: the wait ended without success (not deployed until a new SHA).
	WaitingFor string `json:"waiting_for,omitempty"`
	Final      bool   `json:"final,omitempty"`
	// Fingerprint identifies the chart and settings a deploy applies.
	Fingerprint string `json:"-"`
	// PlannedAt is the plan's Now: the executor skips work that a newer
	// outcome (after the observation) already made moot.
	PlannedAt time.Time `json:"-"`
}

// Key identifies the PR an action belongs to.
func (a Action) Key() model.Key { return model.Key{Repo: a.Repo, Number: a.Number} }

// String is the one-line human form `previewd plan` prints.
func (a Action) String() string {
	s := fmt.Sprintf("%s#%d %-7s %s", a.Repo, a.Number, a.Kind, a.Namespace)
	switch {
	case a.FromSHA != "" && a.SHA != "" && a.FromSHA != a.SHA:
		s += fmt.Sprintf(" %s → %s", short(a.FromSHA), short(a.SHA))
	case a.SHA != "":
		s += " " + short(a.SHA)
	case a.FromSHA != "":
		s += " " + short(a.FromSHA)
	}
	return s + " (" + a.Reason + ")"
}

func short(sha string) string { return model.ShortSHA(sha) }

// Skip is a PR the plan deliberately leaves alone, with the reason; `plan
// -v` shows them and the logs record them at debug level.
type Skip struct {
	Repo   string `json:"repo"`
	Number int    `json:"pr,omitempty"`
	State  State  `json:"state,omitempty"`
	Reason string `json:"reason"`
}

// Result is the plan.
type Result struct {
	Actions []Action `json:"actions"`
	Skipped []Skip   `json:"skipped,omitempty"`
	// RepoIDs are GitHub ids of configured repositories that their live
	// records do not carry yet, by repository: recorded so that the
	// previews can follow a rename (StateRenamed).
	RepoIDs map[string]int64 `json:"-"`
}

// Plan diffs the observation into actions: it joins what was observed
// about each pull request (Facts), classifies it (Classify) and decides its
// actions (decide). It does no I/O and reads no clock.
func Plan(obs Observation, opts Options) Result {
	var res Result
	if !obs.Cluster.Complete {
		res.Skipped = append(res.Skipped, Skip{State: StateClusterUnknown,
			Reason: fmt.Sprintf("cluster not observed (%v): no cluster action planned", obs.Cluster.Err)})
	}
	all := facts(obs, opts)
	for i := range all {
		f := &all[i]
		v := Classify(*f, opts)
		n := len(res.Actions)
		var skip *Skip
		res.Actions, skip = decide(*f, v, opts, res.Actions)
		for j := n; j < len(res.Actions); j++ {
			res.Actions[j].PlannedAt = opts.Now
		}
		if skip != nil {
			res.Skipped = append(res.Skipped, *skip)
		}
	}
	for _, ro := range obs.Repos {
		if !ro.Complete {
			res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Reason: fmt.Sprintf("GitHub observation incomplete (%v): no deletion planned", ro.Err)})
		}
	}
	res.RepoIDs = unrecordedIDs(obs)
	res = capDrift(res, opts.MaxParallel)
	res.Actions = append(res.Actions, commentRepairs(obs.Previews, res.Actions, opts)...)
	sortActions(res.Actions)
	slices.SortStableFunc(res.Skipped, func(a, b Skip) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Number, b.Number))
	})
	return res
}

// facts joins, per pull request, what GitHub, PostgreSQL and the cluster
// said. Closed PRs of a repository whose list was incomplete are left out:
// an incomplete answer never leads to a deletion.
func facts(obs Observation, opts Options) []Facts {
	rows := make(map[model.Key]*model.Preview, len(obs.Previews))
	for i := range obs.Previews {
		rows[obs.Previews[i].Key()] = &obs.Previews[i]
	}
	// One allocation for every owned namespace the facts point to.
	owned := make([]model.Namespace, 0, len(obs.Cluster.Owned))
	for _, ns := range obs.Cluster.Owned {
		owned = append(owned, ns)
	}
	ownedByKey := make(map[model.Key]*model.Namespace, len(owned))
	byName := make(map[string]*model.Namespace, len(owned))
	for i := range owned {
		ownedByKey[model.Key{Repo: owned[i].Repo, Number: owned[i].Number}] = &owned[i]
		byName[owned[i].Name] = &owned[i]
	}
	total := 0
	for _, ro := range obs.Repos {
		total += len(ro.Open) + len(ro.Closed) + len(ro.Unconfirmed)
	}
	// own joins the PR's own namespace, its release and its workloads.
	own := func(f *Facts, o *model.Namespace) {
		f.Owned, f.Release = o, obs.Cluster.Releases[o.Name]
		f.Workloads, f.WorkloadsObserved = obs.Cluster.Workloads[o.Name]
	}
	base := func(repo string, number int, complete bool) Facts {
		k := model.Key{Repo: repo, Number: number}
		f := Facts{Repo: repo, Number: number, RepoComplete: complete, ClusterComplete: obs.Cluster.Complete,
			Row: rows[k], Namespace: opts.NamespaceFor(repo, number)}
		if o, ok := ownedByKey[k]; ok {
			own(&f, o)
		}
		return f
	}
	renamed, moving := renames(obs, rows, opts.Policies)
	// adopt gives a PR of a renamed repository the record and namespace
	// kept under the old name.
	adopt := func(f *Facts) bool {
		r, ok := renamed[model.Key{Repo: f.Repo, Number: f.Number}]
		if !ok {
			return false
		}
		f.Row, f.RenamedFrom, f.Namespace = r, r.Repo, r.Namespace
		// The namespace carries the old name, or already the new one
		// (a rename interrupted between namespace and record).
		if o, ok := ownedByKey[r.Key()]; ok {
			own(f, o)
		} else if o, ok := ownedByKey[model.Key{Repo: f.Repo, Number: f.Number}]; ok {
			own(f, o)
		}
		if f.Owned != nil {
			f.Namespace = f.Owned.Name
		}
		return true
	}
	out := make([]Facts, 0, total+len(renamed))
	for _, ro := range obs.Repos {
		fingerprint := Fingerprint(opts.Digests[ro.Repo], obs.Charts[ro.Repo])
		for i := range ro.Open {
			pr := &ro.Open[i] // the actions point into the observation
			f := base(ro.Repo, pr.Number, ro.Complete)
			f.PR, f.Fingerprint = pr, fingerprint
			if adopt(&f) {
				delete(renamed, model.Key{Repo: f.Repo, Number: f.Number})
				out = append(out, f)
				continue
			}
			if f.Row != nil && f.Row.Namespace != "" && f.Row.Status != model.StatusDeleted {
				// A preview stays in the namespace it was created in
				// (one moved from the repository's old name keeps it).
				f.Namespace = f.Row.Namespace
			}
			if c, ok := ro.Checks[pr.Number]; ok {
				f.Checks = &c
			}
			f.Filtered = filtered(*pr, opts.Policies[ro.Repo])
			f.Foreign = obs.Cluster.Foreign[f.Namespace]
			if o, ok := byName[f.Namespace]; ok {
				if !strings.EqualFold(o.Repo, ro.Repo) || o.Number != pr.Number {
					// Ours, but another repository's or PR's (same name).
					f.Foreign = true
				} else if f.Owned == nil {
					own(&f, o)
				}
			}
			if f.Foreign {
				f.Release = model.Release{}
			}
			out = append(out, f)
		}
		if !ro.Complete {
			continue
		}
		for i := range ro.Closed {
			c := &ro.Closed[i]
			f := base(ro.Repo, c.Number, true)
			if f.Row != nil && f.Row.Namespace != "" {
				f.Namespace = f.Row.Namespace
			}
			f.Closed = c
			out = append(out, f)
		}
		for _, n := range ro.Unconfirmed {
			f := base(ro.Repo, n, true)
			f.Unconfirmed = true
			out = append(out, f)
		}
	}
	// Records of a renamed repository's PRs that are not open: moved too,
	// then closed or kept under the new name like any other.
	for _, k := range slices.SortedFunc(maps.Keys(renamed), compareKeys) {
		f := base(k.Repo, k.Number, false)
		adopt(&f)
		out = append(out, f)
	}
	// Previews of repositories that are not configured (any more).
	for _, k := range orphanKeys(obs, opts.Policies) {
		if moving[k] {
			continue
		}
		f := base(k.Repo, k.Number, false)
		f.Orphaned, f.OrphanedSince = true, obs.OrphanSince[k.Repo]
		if f.OrphanedSince.IsZero() {
			f.OrphanedSince = opts.Now
		}
		switch {
		case f.Owned != nil:
			f.Namespace = f.Owned.Name
		case f.Row != nil && f.Row.Namespace != "":
			f.Namespace = f.Row.Namespace
		}
		out = append(out, f)
	}
	return out
}

// repoIDs are the GitHub ids of the observed repositories, as their open
// PRs report them (a repository without open PRs is missing).
func repoIDs(obs Observation) map[string]int64 {
	ids := map[string]int64{}
	for _, ro := range obs.Repos {
		for _, pr := range ro.Open {
			if pr.RepoID != 0 {
				ids[ro.Repo] = pr.RepoID
				break
			}
		}
	}
	return ids
}

// unrecordedIDs are the ids of configured repositories that some live
// record of theirs does not carry.
func unrecordedIDs(obs Observation) map[string]int64 {
	ids := repoIDs(obs)
	var out map[string]int64
	for _, p := range obs.Previews {
		if id, ok := ids[p.Repo]; ok && p.RepoID != id && p.Status != model.StatusDeleted {
			if out == nil {
				out = map[string]int64{}
			}
			out[p.Repo] = id
		}
	}
	return out
}

// renames finds the live records kept under a repository name that is not
// configured whose GitHub id is that of a configured repository (read from
// its open PRs): the repository was renamed or transferred and configured
// under its new name. It returns them by their new key (only where the new
// name has no live record of that PR), and their old keys.
func renames(obs Observation, rows map[model.Key]*model.Preview, configured map[string]RepoPolicy) (map[model.Key]*model.Preview, map[model.Key]bool) {
	ids := repoIDs(obs)
	if len(ids) == 0 {
		return nil, nil
	}
	byID := make(map[int64]string, len(ids))
	for repo, id := range ids {
		byID[id] = repo
	}
	renamed, moving := map[model.Key]*model.Preview{}, map[model.Key]bool{}
	for i := range obs.Previews {
		p := &obs.Previews[i]
		if p.RepoID == 0 || p.Status == model.StatusDeleted {
			continue
		}
		if _, ok := configured[p.Repo]; ok {
			continue
		}
		to, ok := byID[p.RepoID]
		if !ok {
			continue
		}
		k := model.Key{Repo: to, Number: p.Number}
		if rows[k] != nil || renamed[k] != nil {
			continue // the new name has a preview of its own: the old one stays an orphan
		}
		renamed[k], moving[p.Key()] = p, true
	}
	return renamed, moving
}

func compareKeys(a, b model.Key) int {
	return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Number, b.Number))
}

// orphanKeys are the PRs with a live record or an owned namespace whose
// repository is not configured, in order.
func orphanKeys(obs Observation, configured map[string]RepoPolicy) []model.Key {
	seen := map[model.Key]bool{}
	var out []model.Key
	add := func(k model.Key) {
		if _, ok := configured[k.Repo]; ok || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, k)
	}
	for _, p := range obs.Previews {
		if p.Status != model.StatusDeleted {
			add(p.Key())
		}
	}
	for _, ns := range obs.Cluster.Owned {
		add(model.Key{Repo: ns.Repo, Number: ns.Number})
	}
	slices.SortFunc(out, compareKeys)
	return out
}

// OrphanedRepos are the repositories that are not configured and still
// have previews (records or namespaces), in order.
func OrphanedRepos(obs Observation, configured map[string]RepoPolicy) []string {
	var out []string
	for _, k := range orphanKeys(obs, configured) {
		if len(out) == 0 || out[len(out)-1] != k.Repo {
			out = append(out, k.Repo)
		}
	}
	return out
}

// capDrift keeps at most max upgrades for a configuration change in one
// plan (the rest are skipped and planned by later cycles), so that a chart
// or values change rolls out at the pace of the deploy slots instead of
// queueing every preview at once ahead of new pushes.
func capDrift(res Result, max int) Result {
	if max <= 0 {
		return res
	}
	n := 0
	kept := res.Actions[:0]
	for _, a := range res.Actions {
		if a.State == StateDrifted {
			if n++; n > max {
				res.Skipped = append(res.Skipped, Skip{Repo: a.Repo, Number: a.Number, State: a.State,
					Reason: fmt.Sprintf("configuration changed; upgrade queued (at most %d per cycle)", max)})
				continue
			}
		}
		kept = append(kept, a)
	}
	res.Actions = kept
	return res
}

// Fingerprint identifies a deploy by the repository's settings digest and
// its chart's digest; "" when either is unknown.
func Fingerprint(settings, chart string) string {
	if settings == "" || chart == "" {
		return ""
	}
	h := sha256.Sum256([]byte(settings + "\n" + chart))
	return hex.EncodeToString(h[:12])
}

// commentRepairs plans a comment update for each preview whose comment
// lags behind its record (a failed PATCH, a crash) and that has no other
// action this cycle.
func commentRepairs(rows []model.Preview, planned []Action, opts Options) []Action {
	if opts.CommentHash == nil {
		return nil
	}
	busy := map[model.Key]bool{}
	for _, a := range planned {
		busy[a.Key()] = true
	}
	var out []Action
	for _, p := range rows {
		if busy[p.Key()] || p.Status == model.StatusDeploying || p.Status == model.StatusPending {
			continue
		}
		if _, ok := opts.Policies[p.Repo]; !ok {
			// Not configured: its comment is written once more when its
			// preview is removed, not repaired every cycle.
			continue
		}
		if h := opts.CommentHash(p); h != "" && h != p.CommentHash {
			out = append(out, Action{Kind: KindComment, Repo: p.Repo, Number: p.Number,
				Namespace: p.Namespace, SHA: p.DesiredSHA, Reason: "comment out of date", PlannedAt: opts.Now})
		}
	}
	return out
}

func sortActions(as []Action) {
	slices.SortStableFunc(as, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Number, b.Number), cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]))
	})
}
