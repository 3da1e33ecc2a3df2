package demo

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report prints the cluster, the PR comments, previewd's metrics and the
// fake's counters, and checks what a user would check.
func (s *session) report(ctx context.Context) error {
	if err := s.reportCluster(ctx); err != nil {
		return err
	}
	s.reportComments()
	if err := s.reportMetrics(ctx); err != nil {
		return err
	}
	s.reportFake()
	return nil
}

func (s *session) section(title string) {
	s.printf("\n== %s %s\n", title, strings.Repeat("=", max(3, 76-len(title))))
}

func (s *session) reportCluster(ctx context.Context) error {
	s.section("Namespaces and Helm releases (client-go)")
	items, err := s.ownNamespaces(ctx)
	if err != nil {
		return err
	}
	byNS := map[string]*demoPR{}
	for _, p := range s.prs {
		byNS[p.Namespace] = p
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPR\tRELEASE\tREVISION\tSTATUS\tIMAGE TAG\tREADY\tHOST\tPR_BRANCH in the pod")
	seen := map[string]bool{}
	p1Revision := 0
	for _, ns := range items {
		pv, err := s.observe(ctx, ns.Name)
		if err != nil {
			return err
		}
		seen[ns.Name] = true
		state := pv.ReleaseStatus
		if pv.Terminating {
			state = "terminating"
		}
		fmt.Fprintf(tw, "%s\t#%s\t%s\t%d\t%s\t%s\t%d/%d\t%s\t%s\n", ns.Name, pv.PR, pv.Release, pv.Revision, state,
			short(pv.Tag), pv.Ready, pv.Replicas, strings.Join(pv.Hosts, ","), pv.Branch)
		p := byNS[ns.Name]
		if p == s.prs[0] {
			p1Revision = pv.Revision
		}
		if p == nil {
			s.problem("namespace %s is not one of the demo's pull requests", ns.Name)
			continue
		}
		// What Helm got must be exactly what GitHub said: no --set mangling.
		if pv.Branch != p.Branch {
			s.problem("%s: the pod's PR_BRANCH is %q, the PR's branch is %q", ns.Name, pv.Branch, p.Branch)
		}
		if pv.Tag != p.SHA || pv.Image != DefaultImage {
			s.problem("%s runs %s:%s, want %s:%s", ns.Name, pv.Image, pv.Tag, DefaultImage, p.SHA)
		}
		if want := ns.Name + ".preview.local"; len(pv.Hosts) != 1 || pv.Hosts[0] != want {
			s.problem("%s: Ingress hosts %v, want [%s]", ns.Name, pv.Hosts, want)
		}
	}
	_ = tw.Flush()
	s.printf("%s", indent(b.String(), "  ")+"\n")
	for _, p := range s.prs {
		switch {
		case p.Number == s.prs[1].Number && !seen[p.Namespace]:
			s.printf("  %s is gone: #%d was merged.\n", p.Namespace, p.Number)
		case p.Number == s.prs[1].Number:
			s.problem("%s still exists although #%d was merged", p.Namespace, p.Number)
		case !seen[p.Namespace]:
			s.problem("no namespace %s for open PR #%d", p.Namespace, p.Number)
		}
	}
	s.printf("  Image repository %s; the tag is the PR's head SHA (shown shortened).\n", DefaultImage)
	if p1Revision == 2 {
		s.printf("  #%d is at revision 2: the push upgraded its release in place.\n", s.prs[0].Number)
	}
	return nil
}

func (s *session) reportComments() {
	s.section("Pull request comments (as GitHub shows them)")
	for _, p := range s.prs {
		all := s.fake.Comments(s.repo, p.Number)
		bot := s.botComments(p.Number)
		state := "open"
		if p.Number == s.prs[1].Number {
			state = "merged"
		}
		s.printf("\n  #%d %s [%s, branch %s]\n", p.Number, p.Title, state, p.Branch)
		if len(bot) != 1 {
			s.problem("#%d has %d comments by %s, want exactly one (updated in place)", p.Number, len(bot), botLogin)
		}
		if len(bot) == 0 {
			continue
		}
		c := bot[len(bot)-1]
		edited := ""
		if c.UpdatedAt.After(c.CreatedAt) {
			edited = fmt.Sprintf(", edited %s later", c.UpdatedAt.Sub(c.CreatedAt).Round(time.Second))
		}
		s.printf("  ┌─ %s commented (comment %d%s; %d comment(s) on the PR)\n", c.Login, c.ID, edited, len(all))
		for _, l := range githubView(c.Body) {
			s.printf("  │ %s\n", l)
		}
		s.printf("  └─\n")
		if sts := s.fake.Statuses(s.repo, p.SHA); len(sts) > 0 {
			st := sts[len(sts)-1]
			s.printf("  commit status on %s: %s %q %s\n", short(p.SHA), st.State, st.Description, st.TargetURL)
		}
	}
}

func (s *session) reportMetrics(ctx context.Context) error {
	s.section("previewd's /metrics (selected series)")
	// previewd_previews is recorded at the end of a cycle: give previewd a
	// few cycles to record the final state (2 ready, nothing else).
	var m metrics
	settled := func() bool {
		for _, st := range []string{"pending", "deploying", "failed", "deleting"} {
			if m.Value("previewd_previews", "state", st) != 0 {
				return false
			}
		}
		return m.Value("previewd_previews", "state", "ready") == 2
	}
	deadline := time.Now().Add(3*s.o.Interval + 2*time.Second)
	for {
		code, body, err := s.get(ctx, "/metrics")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("scraping previewd's /metrics: status %d, %v", code, err)
		}
		if m, err = parseMetrics(strings.NewReader(body)); err != nil {
			return err
		}
		if settled() || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(name, val string) { fmt.Fprintf(tw, "%s\t%s\n", name, val) }

	count, sum := m.Value("previewd_deploy_latency_seconds_count"), m.Value("previewd_deploy_latency_seconds_sum")
	lat := fmt.Sprintf("count %s  sum %ss", formatNumber(count), formatNumber(sum))
	if count > 0 {
		lat += fmt.Sprintf("  mean %.1fs  (head SHA first seen → preview Ready)", sum/count)
	}
	row("previewd_deploy_latency_seconds", lat)
	row("previewd_deploy_attempts_total", m.labels("previewd_deploy_attempts_total", "outcome", "ready", "failed", "cancelled"))
	row("previewd_previews", m.labels("previewd_previews", "state", "pending", "deploying", "ready", "failed", "deleting"))
	row("previewd_namespace_deletions_total", m.labels("previewd_namespace_deletions_total", "outcome", "ok", "error"))
	row("previewd_reconcile_cycles_total", m.labels("previewd_reconcile_cycles_total", "result", "ok", "error"))
	row("previewd_github_requests_total", m.labels("previewd_github_requests_total", "outcome",
		"ok", "not_modified", "client_error", "rate_limited", "server_error", "network_error"))
	row("previewd_github_rate_limit_remaining", formatNumber(m.Value("previewd_github_rate_limit_remaining")))
	if v, ok := m.Get("previewd_last_successful_sync_timestamp_seconds"); ok && v > 0 {
		row("previewd_last_successful_sync_timestamp_seconds", fmt.Sprintf("%s (%s ago)", formatNumber(v),
			time.Since(time.Unix(int64(v), 0)).Round(time.Second)))
	}
	_ = tw.Flush()
	s.printf("%s", indent(b.String(), "  ")+"\n")

	// What the demo did must show up.
	if ready := m.Value("previewd_deploy_attempts_total", "outcome", "ready"); !(ready >= 4) {
		s.problem("previewd_deploy_attempts_total{outcome=\"ready\"} is %s, want at least 4 (3 installs and 1 upgrade)", formatNumber(ready))
	}
	if !settled() {
		s.problem("previewd_previews is %s %s after the last change, want ready=2 and nothing else",
			m.labels("previewd_previews", "state", "pending", "deploying", "ready", "failed", "deleting"), 3*s.o.Interval+2*time.Second)
	}
	if v := m.Value("previewd_namespace_deletions_total", "outcome", "ok"); v != 1 {
		s.problem("previewd_namespace_deletions_total{outcome=\"ok\"} is %s, want 1", formatNumber(v))
	}
	if !(m.Value("previewd_github_requests_total", "outcome", "not_modified") > 0) {
		s.problem("previewd_github_requests_total{outcome=\"not_modified\"} is 0: conditional requests are not used")
	}
	return nil
}

// labels prints "a=1 b=2" for the label values of one metric, in order;
// values not in order follow, sorted.
func (m metrics) labels(name, key string, order ...string) string {
	keys, vals := m.ByLabel(name, key)
	var parts []string
	done := map[string]bool{}
	for _, k := range order {
		if v, ok := vals[k]; ok {
			parts = append(parts, k+"="+formatNumber(v))
			done[k] = true
		}
	}
	for _, k := range keys {
		if !done[k] {
			parts = append(parts, k+"="+formatNumber(vals[k]))
		}
	}
	if len(parts) == 0 {
		return "(absent)"
	}
	return strings.Join(parts, " ")
}

func (s *session) reportFake() {
	s.section("GitHub fake's counters (what GitHub would have seen)")
	c := s.fake.Counters()
	s.printf("  %d API requests: %d charged to the rate limit, %d answered 304 Not Modified (free), %d mutations\n",
		c.Requests, c.Charged, c.NotModified, c.Mutations)
	if r, ok := s.fake.RateLimit(s.token); ok {
		s.printf("  %s's token: %d of %d requests left this hour (%d used)\n", botLogin, r.Remaining, r.Limit, r.Used)
	}
	routes := make([]string, 0, len(c.ByRoute))
	for r := range c.ByRoute {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range routes {
		statuses := make([]int, 0, len(c.ByRoute[r]))
		for st := range c.ByRoute[r] {
			statuses = append(statuses, st)
		}
		sort.Ints(statuses)
		var parts []string
		for _, st := range statuses {
			parts = append(parts, strconv.Itoa(st)+"×"+strconv.Itoa(c.ByRoute[r][st]))
		}
		fmt.Fprintf(tw, "%s\t%s\n", r, strings.Join(parts, "  "))
	}
	_ = tw.Flush()
	s.printf("  by route and status:\n%s\n", indent(b.String(), "    "))
	if c.NotModified == 0 {
		s.problem("the fake answered no 304: previewd does not send conditional requests")
	}
}
