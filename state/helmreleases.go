package state

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"helm.sh/helm/v4/pkg/release"
	rspb "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
)

// HelmReleases keeps Helm's release records in PostgreSQL (table
// helm_releases) instead of Secrets in each preview namespace: previewd's
// identity then needs no access to Secrets for its own releases, and
// Versions tells which releases changed with one query. Records are keyed
// by namespace; Driver gives Helm one namespace's view.
type HelmReleases struct{ s *Store }

// HelmReleases returns the store of Helm release records.
func (s *Store) HelmReleases() *HelmReleases { return &HelmReleases{s: s} }

// maxReleaseBody bounds a decoded release record (the compressed body is
// inflated at most this far): a record is previewd's own, and a preview
// chart of this size would already have failed (Helm's Secret driver
// stops at 1 MiB).
const maxReleaseBody = 64 << 20

// helmSystemLabels are the labels Helm's storage sets itself; Get returns
// the others as the release's Labels (as Helm's Secret driver does).
var helmSystemLabels = []string{"name", "owner", "status", "version", "createdAt", "modifiedAt"}

// Driver is Helm's storage driver for namespace. Every query it makes is
// bound to ctx (an operation's context: once it is done, the driver can
// make no further change).
func (h *HelmReleases) Driver(ctx context.Context, namespace string) driver.Driver {
	return &helmDriver{ctx: ctx, ns: namespace, s: h.s}
}

// Versions returns, per namespace that holds at least one record of
// release name, a signature of those records that changes with every
// write (new revision, status change, uninstall).
func (h *HelmReleases) Versions(ctx context.Context, name string) (map[string]string, error) {
	rows, err := h.s.pool.Query(ctx, `SELECT namespace, string_agg(key || '@' || seq, ',' ORDER BY key)
		FROM helm_releases WHERE name = $1 GROUP BY namespace`, name)
	if err != nil {
		return nil, fmt.Errorf("listing the release records of %q: %w", name, err)
	}
	out := map[string]string{}
	var ns, sig string
	_, err = pgx.ForEachRow(rows, []any{&ns, &sig}, func() error { out[ns] = sig; return nil })
	if err != nil {
		return nil, fmt.Errorf("listing the release records of %q: %w", name, err)
	}
	return out, nil
}

// Purge removes every record of namespace (a namespace that is gone, or
// created afresh: what was recorded for an earlier one must not be taken
// for its release).
func (h *HelmReleases) Purge(ctx context.Context, namespace string) (int64, error) {
	tag, err := h.s.pool.Exec(ctx, `DELETE FROM helm_releases WHERE namespace = $1`, namespace)
	if err != nil {
		return 0, fmt.Errorf("removing the release records of %s: %w", namespace, err)
	}
	return tag.RowsAffected(), nil
}

type helmDriver struct {
	ctx context.Context
	ns  string
	s   *Store
}

// Name is the driver's name as Helm reports it.
func (d *helmDriver) Name() string { return "previewd-postgresql" }

func (d *helmDriver) Get(key string) (release.Releaser, error) {
	return d.one("get", `SELECT body, labels FROM helm_releases WHERE namespace = $1 AND key = $2`, key)
}

// one runs sql (a SELECT or a DELETE … RETURNING of one record by key) and
// returns the record with its own labels (not Helm's, as the Secret driver
// does).
func (d *helmDriver) one(op, sql, key string) (release.Releaser, error) {
	var (
		body   []byte
		labels map[string]string
	)
	err := d.s.pool.QueryRow(d.ctx, sql, d.ns, key).Scan(&body, &labels)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, driver.ErrReleaseNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s: failed to %s %q: %w", op, op, key, err)
	}
	r, err := decodeHelmRelease(body)
	if err != nil {
		return nil, fmt.Errorf("%s: failed to decode %q: %w", op, key, err)
	}
	r.Labels = customLabels(labels)
	return r, nil
}

func (d *helmDriver) List(filter func(release.Releaser) bool) ([]release.Releaser, error) {
	rs, err := d.query(`SELECT body, labels FROM helm_releases WHERE namespace = $1 AND labels @> '{"owner":"helm"}'`, d.ns)
	if err != nil {
		return nil, fmt.Errorf("list: failed to list: %w", err)
	}
	var out []release.Releaser
	for _, r := range rs {
		if filter == nil || filter(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (d *helmDriver) Query(labels map[string]string) ([]release.Releaser, error) {
	want, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	rs, err := d.query(`SELECT body, labels FROM helm_releases WHERE namespace = $1 AND labels @> $2::jsonb`, d.ns, string(want))
	if err != nil {
		return nil, fmt.Errorf("query: failed to query with labels: %w", err)
	}
	if len(rs) == 0 {
		return nil, driver.ErrReleaseNotFound
	}
	out := make([]release.Releaser, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out, nil
}

// query reads records; one that does not decode is skipped, as Helm's
// drivers do.
func (d *helmDriver) query(sql string, args ...any) ([]*rspb.Release, error) {
	rows, err := d.s.pool.Query(d.ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var (
		out    []*rspb.Release
		body   []byte
		labels map[string]string
	)
	_, err = pgx.ForEachRow(rows, []any{&body, &labels}, func() error {
		r, err := decodeHelmRelease(body)
		if err != nil {
			return nil
		}
		r.Labels = labels
		out = append(out, r)
		return nil
	})
	return out, err
}

func (d *helmDriver) Create(key string, rel release.Releaser) error {
	r, labels, body, err := encodeHelmRelease(rel, "createdAt")
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	_, err = d.s.pool.Exec(d.ctx, `INSERT INTO helm_releases (namespace, key, name, version, status, labels, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, d.ns, key, r.Name, r.Version, r.Info.Status.String(), labels, body)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return driver.ErrReleaseExists
	}
	if err != nil {
		return fmt.Errorf("create: failed to create: %w", err)
	}
	return nil
}

func (d *helmDriver) Update(key string, rel release.Releaser) error {
	r, labels, body, err := encodeHelmRelease(rel, "modifiedAt")
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	tag, err := d.s.pool.Exec(d.ctx, `UPDATE helm_releases SET name = $3, version = $4, status = $5, labels = $6, body = $7,
			seq = nextval('helm_releases_seq'), updated_at = now()
		WHERE namespace = $1 AND key = $2`, d.ns, key, r.Name, r.Version, r.Info.Status.String(), labels, body)
	if err != nil {
		return fmt.Errorf("update: failed to update: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("update: failed to update %q: %w", key, driver.ErrReleaseNotFound)
	}
	return nil
}

func (d *helmDriver) Delete(key string) (release.Releaser, error) {
	return d.one("delete", `DELETE FROM helm_releases WHERE namespace = $1 AND key = $2 RETURNING body, labels`, key)
}

// encodeHelmRelease returns the release, its record labels (the release's
// own, then Helm's system labels, stamp set to now) and its body.
func encodeHelmRelease(rel release.Releaser, stamp string) (*rspb.Release, map[string]string, []byte, error) {
	var r *rspb.Release
	switch v := rel.(type) {
	case *rspb.Release:
		r = v
	case rspb.Release:
		r = &v
	default:
		return nil, nil, nil, fmt.Errorf("unsupported release type %T", rel)
	}
	if r == nil || r.Info == nil {
		return nil, nil, nil, errors.New("release without info")
	}
	labels := make(map[string]string, len(r.Labels)+5)
	maps.Copy(labels, r.Labels)
	labels["name"], labels["owner"] = r.Name, "helm"
	labels["status"], labels["version"] = r.Info.Status.String(), strconv.Itoa(r.Version)
	labels[stamp] = strconv.FormatInt(time.Now().Unix(), 10)
	js, err := json.Marshal(r)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encoding release %q: %w", r.Name, err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(js); err != nil {
		return nil, nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, nil, err
	}
	return r, labels, buf.Bytes(), nil
}

func decodeHelmRelease(body []byte) (*rspb.Release, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	js, err := io.ReadAll(io.LimitReader(zr, maxReleaseBody+1))
	if err != nil {
		return nil, err
	}
	if len(js) > maxReleaseBody {
		return nil, fmt.Errorf("release record larger than %d bytes", maxReleaseBody)
	}
	var r rspb.Release
	if err := json.Unmarshal(js, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func customLabels(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		if !slices.Contains(helmSystemLabels, k) {
			out[k] = v
		}
	}
	return out
}
