package model

import (
	"fmt"
	"path"
	"strings"
)

// ChartKind is where a repository's chart comes from.
type ChartKind string

// Chart kinds, by the form of the configuration's chart: value.
const (
	// ChartDir is a chart directory (or packaged .tgz) on previewd's disk.
	ChartDir ChartKind = "dir"
	// ChartOCI is a chart in an OCI registry: oci://host/path/chart at a
	// version.
	ChartOCI ChartKind = "oci"
	// ChartRepo is the chart directory of the PR's own repository at its
	// head SHA: repo:path/in/repo.
	ChartRepo ChartKind = "repo"
)

// Prefixes of the chart: forms.
const (
	ociPrefix  = "oci://"
	repoPrefix = "repo:"
)

// ChartSource is a repository's chart: setting, parsed.
type ChartSource struct {
	Kind ChartKind
	// Location is the directory (ChartDir), the registry reference
	// without the oci:// scheme and version (ChartOCI) or the directory
	// inside the repository, without leading or trailing slash, "." for
	// its root (ChartRepo).
	Location string
	// Version is the chart version of an OCI chart.
	Version string
}

// ChartSourceError says which of chart: and chart_version is wrong.
type ChartSourceError struct {
	// Field is "chart" or "chart_version".
	Field string
	Msg   string
}

func (e *ChartSourceError) Error() string { return e.Msg }

func badChart(format string, args ...any) error {
	return &ChartSourceError{Field: "chart", Msg: fmt.Sprintf(format, args...)}
}

func badVersion(format string, args ...any) error {
	return &ChartSourceError{Field: "chart_version", Msg: fmt.Sprintf(format, args...)}
}

// ParseChartSource reads a chart: value. It checks the form only (a
// directory's existence is the configuration's to check).
func ParseChartSource(s, version string) (ChartSource, error) {
	switch {
	case strings.HasPrefix(s, ociPrefix):
		loc := strings.TrimPrefix(s, ociPrefix)
		host, repo, _ := strings.Cut(loc, "/")
		if host == "" || repo == "" || strings.ContainsAny(loc, "@ ") || strings.HasSuffix(loc, "/") {
			return ChartSource{}, badChart("must be oci://host/path/chart (no tag or digest: the version goes in chart_version), got %q", s)
		}
		if last := repo[strings.LastIndex(repo, "/")+1:]; strings.Contains(last, ":") {
			return ChartSource{}, badChart("must not carry a tag (put the version in chart_version), got %q", s)
		}
		if version == "" {
			return ChartSource{}, badVersion("an OCI chart needs chart_version (the chart version to deploy, such as 1.4.2)")
		}
		return ChartSource{Kind: ChartOCI, Location: loc, Version: version}, nil
	case strings.HasPrefix(s, repoPrefix):
		p := strings.Trim(strings.TrimPrefix(s, repoPrefix), "/")
		if p == "" {
			p = "."
		}
		if c := path.Clean(p); c != p || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(p, "\\") {
			return ChartSource{}, badChart("must be repo:path/in/repo, a clean relative path inside the repository (no '..', no '//'), got %q", s)
		}
		if version != "" {
			return ChartSource{}, badVersion("chart_version is for oci:// charts only: a repo: chart is the one at the PR's head SHA")
		}
		return ChartSource{Kind: ChartRepo, Location: p}, nil
	}
	if version != "" {
		return ChartSource{}, badVersion("chart_version is for oci:// charts only: a chart directory is deployed as it is on disk")
	}
	return ChartSource{Kind: ChartDir, Location: s}, nil
}

// String is the chart: value that the source came from, with the version
// of an OCI chart (oci://host/path/chart:1.4.2).
func (c ChartSource) String() string {
	switch c.Kind {
	case ChartOCI:
		return ociPrefix + c.Location + ":" + c.Version
	case ChartRepo:
		return repoPrefix + c.Location
	}
	return c.Location
}

// ChartRef is the chart of one deploy: a source, and for a ChartRepo
// source the repository and commit it is read from.
type ChartRef struct {
	Source ChartSource
	// Repo is the repository the preview is for (owner/name).
	Repo string
	// SHA is the commit deployed; a ChartRepo chart is read at it.
	SHA string
}

// String names the chart in messages (repo:deploy/chart@1a2b3c4).
func (r ChartRef) String() string {
	if r.Source.Kind == ChartRepo {
		return fmt.Sprintf("%s@%s in %s", r.Source, ShortSHA(r.SHA), r.Repo)
	}
	return r.Source.String()
}

// ShortSHA is the 7-character form of a commit SHA shown to people.
func ShortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
