// Package reconcile turns what previewd observes (GitHub's open PRs, its own
// rows in PostgreSQL, the namespaces and Helm releases in the cluster) into a
// plan of actions (Plan, a pure function), and runs that plan (Executor).
package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/state"
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
}

// Namespace is a namespace previewd owns (labels checked by the observer).
type Namespace struct {
	Name        string
	Repo        string
	Number      int
	Terminating bool
}

// Release is the Helm release in a preview namespace.
type Release struct {
	Exists  bool
	Status  string // deployed, failed, pending-install, pending-upgrade, ...
	SHA     string // image tag of the last applied revision
	Updated time.Time
}

// Locked reports a release that an interrupted operation left pending-*.
func (r Release) Locked() bool {
	return r.Exists && len(r.Status) > 8 && r.Status[:8] == "pending-"
}

// ClusterObservation is what the cluster holds.
type ClusterObservation struct {
	// Complete is false when the API server could not be read; then the
	// plan changes nothing in the cluster.
	Complete bool
	Err      error
	Owned    map[string]Namespace // by name
	Foreign  map[string]bool      // names that exist but are not previewd's
	Releases map[string]Release   // by namespace
}

// Observation is everything one cycle saw.
type Observation struct {
	Repos    []RepoObservation
	Previews []state.Preview
	Cluster  ClusterObservation
}

// RepoPolicy holds the per-repository filters.
type RepoPolicy struct {
	AllowForks    bool
	SkipDrafts    bool
	RequireLabels []string
	IgnoreLabels  []string
}

// Options are the plan's parameters; Now is the only clock.
type Options struct {
	Now           time.Time
	MaxAttempts   int
	DeployTimeout time.Duration
	Policies      map[string]RepoPolicy // by repo name
	// NamespaceFor maps a PR to its namespace name.
	NamespaceFor func(repo string, number int) string
	// CommentHash returns the hash of the comment body the preview's row
	// calls for; a differing stored hash plans a comment action.
	CommentHash func(p state.Preview) string
}

// BlockedText is in the error of a preview blocked by a foreign namespace.
const BlockedText = "is not managed by previewd"

// Kind is what an action does.
type Kind string

// Action kinds, in the order they run for one PR.
const (
	KindUnlock  Kind = "unlock"  // uninstall a release stuck pending-*
	KindDeploy  Kind = "deploy"  // ensure namespace, install/upgrade at SHA, wait ready
	KindVerify  Kind = "verify"  // release already at SHA: only wait for readiness
	KindBlocked Kind = "blocked" // cannot deploy (foreign namespace): say why on the PR
	KindDelete  Kind = "delete"  // uninstall and delete the namespace, wait until gone
	KindForget  Kind = "forget"  // namespace already gone: mark the row deleted
	KindComment Kind = "comment" // bring the PR comment up to date
)

var kindOrder = map[Kind]int{KindUnlock: 0, KindDeploy: 1, KindVerify: 2, KindBlocked: 3, KindDelete: 4, KindForget: 5, KindComment: 6}

// Action is one step of the plan.
type Action struct {
	Kind      Kind   `json:"action"`
	Repo      string `json:"repo"`
	Number    int    `json:"pr"`
	Namespace string `json:"namespace"`
	FromSHA   string `json:"from_sha,omitempty"`
	SHA       string `json:"sha,omitempty"`
	Reason    string `json:"reason"`
	// PR carries the open PR a deploy is for (branch, title).
	PR *PR `json:"-"`
	// Merged is set on deletions of merged PRs.
	Merged bool `json:"merged,omitempty"`
	// PlannedAt is the plan's Now: the executor skips work that a newer
	// outcome (after the observation) already made moot.
	PlannedAt time.Time `json:"-"`
}

// Key identifies the PR an action belongs to.
func (a Action) Key() state.Key { return state.Key{Repo: a.Repo, Number: a.Number} }

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

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// Skip is a PR the plan deliberately leaves alone, with the reason; `plan
// -v` shows them and the logs record them at debug level.
type Skip struct {
	Repo   string `json:"repo"`
	Number int    `json:"pr,omitempty"`
	Reason string `json:"reason"`
}

// Result is the plan.
type Result struct {
	Actions []Action `json:"actions"`
	Skipped []Skip   `json:"skipped,omitempty"`
}

// Plan diffs the observation into actions. It does no I/O and reads no clock.
func Plan(obs Observation, opts Options) Result {
	var res Result
	rows := map[state.Key]state.Preview{}
	for _, p := range obs.Previews {
		rows[state.Key{Repo: p.Repo, Number: p.Number}] = p
	}
	ownedByKey := map[state.Key]Namespace{}
	for _, ns := range obs.Cluster.Owned {
		ownedByKey[state.Key{Repo: ns.Repo, Number: ns.Number}] = ns
	}
	cluster := obs.Cluster.Complete
	if !cluster {
		res.Skipped = append(res.Skipped, Skip{Reason: fmt.Sprintf("cluster not observed (%v): no cluster action planned", obs.Cluster.Err)})
	}
	add := func(a Action) { res.Actions = append(res.Actions, a) }

	for _, ro := range obs.Repos {
		policy := opts.Policies[ro.Repo]
		if !ro.Complete {
			res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Reason: fmt.Sprintf("GitHub observation incomplete (%v): no deletion planned", ro.Err)})
		}
		for _, pr := range ro.Open {
			k := state.Key{Repo: ro.Repo, Number: pr.Number}
			row, hasRow := rows[k]
			ns := opts.NamespaceFor(ro.Repo, pr.Number)
			if why := filtered(pr, policy); why != "" {
				// A preview that exists but is no longer wanted (label
				// removed, turned draft) is removed; otherwise skipped.
				if cluster && ro.Complete && (exists(ownedByKey, k) || (hasRow && row.Status != state.StatusDeleted)) {
					add(deletion(k, ns, ownedByKey, obs.Cluster, "not wanted: "+why, false))
				} else {
					res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: pr.Number, Reason: why})
				}
				continue
			}
			if !cluster {
				continue
			}
			prCopy := pr
			rel := obs.Cluster.Releases[ns]
			foreign := obs.Cluster.Foreign[ns]
			if o, ok := obs.Cluster.Owned[ns]; ok && (!strings.EqualFold(o.Repo, ro.Repo) || o.Number != pr.Number) {
				// Ours, but another repository's or PR's (same name).
				foreign, rel = true, Release{}
			}
			switch {
			case foreign:
				if !hasRow || row.LastError == "" || row.Status != state.StatusFailed || row.DesiredSHA != pr.SHA {
					add(Action{Kind: KindBlocked, Repo: ro.Repo, Number: pr.Number, Namespace: ns, SHA: pr.SHA, PR: &prCopy,
						Reason: "namespace exists and is not owned by previewd"})
				}
			case nsTerminating(ownedByKey, k):
				res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: pr.Number, Reason: "namespace still terminating; deploy after it is gone"})
			case rel.Locked() && opts.Now.Sub(rel.Updated) > opts.DeployTimeout:
				add(Action{Kind: KindUnlock, Repo: ro.Repo, Number: pr.Number, Namespace: ns, SHA: rel.SHA,
					Reason: fmt.Sprintf("release %s since %s", rel.Status, rel.Updated.UTC().Format(time.RFC3339))})
				add(deploy(ro.Repo, &prCopy, ns, rel.SHA, "recover locked release"))
			case hasRow && row.DesiredSHA == pr.SHA && row.Status == state.StatusReady && row.DeployedSHA == pr.SHA &&
				rel.Exists && rel.SHA == pr.SHA && rel.Status == "deployed":
				// InSync.
			case hasRow && row.DesiredSHA == pr.SHA && row.Status == state.StatusFailed && strings.Contains(row.LastError, BlockedText):
				// The foreign namespace is gone (the case above did not match).
				add(deploy(ro.Repo, &prCopy, ns, rel.SHA, "namespace no longer blocked"))
			case hasRow && row.DesiredSHA == pr.SHA && row.Status == state.StatusFailed:
				if row.Attempts >= opts.MaxAttempts || row.NextAttemptAt.IsZero() {
					res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: pr.Number,
						Reason: fmt.Sprintf("failed after %d attempts; waiting for a new SHA", row.Attempts)})
				} else if opts.Now.Before(row.NextAttemptAt) {
					res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: pr.Number,
						Reason: "retry at " + row.NextAttemptAt.UTC().Format(time.RFC3339)})
				} else {
					a := deploy(ro.Repo, &prCopy, ns, rel.SHA, fmt.Sprintf("retry %d of %d", row.Attempts+1, opts.MaxAttempts))
					if rel.Exists && rel.SHA == pr.SHA && rel.Status == "deployed" && exists(ownedByKey, k) {
						a.Kind = KindVerify // the release is applied; only readiness failed
					}
					add(a)
				}
			case rel.Exists && rel.SHA == pr.SHA && rel.Status == "deployed" && exists(ownedByKey, k):
				add(Action{Kind: KindVerify, Repo: ro.Repo, Number: pr.Number, Namespace: ns, SHA: pr.SHA, PR: &prCopy,
					Reason: "release at SHA; readiness not recorded"})
			case !rel.Exists:
				add(deploy(ro.Repo, &prCopy, ns, "", "new preview"))
			default:
				add(deploy(ro.Repo, &prCopy, ns, rel.SHA, "new SHA"))
			}
		}
		if !ro.Complete {
			continue
		}
		for _, c := range ro.Closed {
			k := state.Key{Repo: ro.Repo, Number: c.Number}
			row, hasRow := rows[k]
			ns := opts.NamespaceFor(ro.Repo, c.Number)
			if hasRow && row.Namespace != "" {
				ns = row.Namespace
			}
			if !cluster {
				continue
			}
			what := "closed"
			if c.Merged {
				what = "merged"
			}
			switch {
			case nsTerminating(ownedByKey, k) && hasRow && row.Status == state.StatusDeleting && row.LastError != "":
				res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: c.Number,
					Reason: "namespace stuck terminating (reported on the PR): " + firstLine(row.LastError)})
			case exists(ownedByKey, k):
				add(deletion(k, ns, ownedByKey, obs.Cluster, "PR "+what, c.Merged))
			case hasRow && row.Status != state.StatusDeleted:
				add(Action{Kind: KindForget, Repo: ro.Repo, Number: c.Number, Namespace: ns, Merged: c.Merged,
					Reason: "PR " + what + "; namespace already gone"})
			}
		}
		for _, n := range ro.Unconfirmed {
			res.Skipped = append(res.Skipped, Skip{Repo: ro.Repo, Number: n, Reason: "missing from the open list but not confirmed closed: kept"})
		}
	}

	// Comments that lag behind their row (a failed PATCH, a crash).
	if opts.CommentHash != nil {
		planned := map[state.Key]bool{}
		for _, a := range res.Actions {
			planned[a.Key()] = true
		}
		for _, p := range obs.Previews {
			k := state.Key{Repo: p.Repo, Number: p.Number}
			if planned[k] || p.Status == state.StatusDeploying || p.Status == state.StatusPending {
				continue
			}
			if h := opts.CommentHash(p); h != "" && h != p.CommentHash {
				res.Actions = append(res.Actions, Action{Kind: KindComment, Repo: p.Repo, Number: p.Number,
					Namespace: p.Namespace, SHA: p.DesiredSHA, Reason: "comment out of date"})
			}
		}
	}
	for i := range res.Actions {
		res.Actions[i].PlannedAt = opts.Now
	}
	sortActions(res.Actions)
	slices.SortStableFunc(res.Skipped, func(a, b Skip) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Number, b.Number))
	})
	return res
}

func sortActions(as []Action) {
	slices.SortStableFunc(as, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Number, b.Number), cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]))
	})
}

func deploy(repo string, pr *PR, ns, from, reason string) Action {
	return Action{Kind: KindDeploy, Repo: repo, Number: pr.Number, Namespace: ns, FromSHA: from, SHA: pr.SHA, PR: pr, Reason: reason}
}

func deletion(k state.Key, ns string, owned map[state.Key]Namespace, c ClusterObservation, reason string, merged bool) Action {
	if o, ok := owned[k]; ok {
		ns = o.Name
	}
	a := Action{Kind: KindDelete, Repo: k.Repo, Number: k.Number, Namespace: ns, Reason: reason, Merged: merged}
	if _, ok := owned[k]; !ok {
		a.Kind = KindForget
		a.Reason += "; namespace already gone"
	}
	if r, ok := c.Releases[ns]; ok {
		a.FromSHA = r.SHA
	}
	return a
}

func exists(owned map[state.Key]Namespace, k state.Key) bool { _, ok := owned[k]; return ok }

func nsTerminating(owned map[state.Key]Namespace, k state.Key) bool {
	o, ok := owned[k]
	return ok && o.Terminating
}

func filtered(pr PR, p RepoPolicy) string {
	if pr.Fork && !p.AllowForks {
		if pr.ForkDeleted {
			return "PR from a deleted fork; fork PRs are not deployed (allow_forks: false)"
		}
		return "PR from a fork; fork PRs are not deployed (allow_forks: false)"
	}
	if pr.Draft && p.SkipDrafts {
		return "draft PR (skip_drafts: true)"
	}
	for _, l := range p.IgnoreLabels {
		if slices.Contains(pr.Labels, l) {
			return "has label " + l + " (ignore_labels)"
		}
	}
	for _, l := range p.RequireLabels {
		if !slices.Contains(pr.Labels, l) {
			return "lacks label " + l + " (require_labels)"
		}
	}
	return ""
}
