package reconcile

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/reconcile/model"
)

// Metrics are previewd's own Prometheus series. A nil *Metrics records
// nothing.
type Metrics struct {
	deployLatency    prometheus.Histogram
	deployDuration   *prometheus.HistogramVec
	deploys          *prometheus.CounterVec
	deletions        *prometheus.CounterVec
	deletionDuration prometheus.Histogram
	previews         *prometheus.GaugeVec
	cycleDuration    prometheus.Histogram
	cycleErrors      prometheus.Counter
	cycles           *prometheus.CounterVec
	lastSuccess      prometheus.Gauge
	lastAttempt      prometheus.Gauge
	plannedActions   *prometheus.CounterVec
	repoUp           *prometheus.GaugeVec
	repoLastSuccess  *prometheus.GaugeVec
	orphans          *prometheus.GaugeVec

	mu     sync.Mutex
	synced map[string]time.Time // by configured repository: its last full read
}

// NewMetrics registers the metrics on reg; inFlight reports the start
// times of running deploys for the stuck-deploy gauges.
func NewMetrics(reg prometheus.Registerer, inFlight func() []time.Time) (*Metrics, error) {
	m := &Metrics{
		deployLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "previewd_deploy_latency_seconds",
			Help:    "Time from a head SHA first seen to its preview Ready.",
			Buckets: []float64{5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200},
		}),
		deployDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "previewd_deploy_attempt_duration_seconds",
			Help:    "Duration of one deploy attempt (Helm operation and readiness wait) by outcome.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 180, 300},
		}, []string{"outcome"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_deploy_attempts_total", Help: "Deploy attempts by outcome (ready, failed, cancelled, waiting: the image was not pushed yet).",
		}, []string{"outcome"}),
		deletions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_namespace_deletions_total", Help: "Preview namespace deletions by outcome (ok, error).",
		}, []string{"outcome"}),
		deletionDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "previewd_namespace_deletion_duration_seconds", Help: "Time from delete request to namespace gone.",
			Buckets: []float64{1, 5, 10, 20, 30, 60, 120, 300},
		}),
		previews: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "previewd_previews", Help: "Previews by state (pending, deploying, ready, failed, blocked, deleting), as recorded after the last cycle.",
		}, []string{"state"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "previewd_reconcile_duration_seconds", Help: "Duration of observe+plan+dispatch of one cycle.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		cycleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "previewd_reconcile_errors_total", Help: "Cycles whose observation failed in part or whole.",
		}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_reconcile_cycles_total", Help: "Reconcile cycles by result (ok, error).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "previewd_last_successful_sync_timestamp_seconds", Help: "Unix time of the last cycle that observed everything.",
		}),
		lastAttempt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "previewd_last_sync_attempt_timestamp_seconds", Help: "Unix time of the last cycle.",
		}),
		plannedActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_planned_actions_total", Help: "Actions planned, by kind.",
		}, []string{"kind"}),
		repoUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "previewd_repository_up",
			Help: "1 when the last cycle read the configured repository's open PRs in full, 0 when it could not (see the log and `previewd plan`).",
		}, []string{"repository"}),
		repoLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "previewd_repository_last_successful_sync_timestamp_seconds",
			Help: "Unix time of the last cycle that read the repository's open PRs in full.",
		}, []string{"repository"}),
		orphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "previewd_orphaned_previews",
			Help: "Previews of a repository that is not configured, kept until orphan_grace has passed, by repository.",
		}, []string{"repository"}),
	}
	for _, o := range []string{"ready", "failed", "cancelled", "waiting"} {
		m.deploys.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "error"} {
		m.deletions.WithLabelValues(o)
		m.cycles.WithLabelValues(o)
	}
	for _, s := range model.LiveStatuses {
		m.previews.WithLabelValues(string(s))
	}
	cs := []prometheus.Collector{m.deployLatency, m.deployDuration, m.deploys, m.deletions, m.deletionDuration, m.previews,
		m.cycleDuration, m.cycleErrors, m.cycles, m.lastSuccess, m.lastAttempt, m.plannedActions, m.repoUp, m.repoLastSuccess, m.orphans}
	if inFlight != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "previewd_deploys_in_flight", Help: "Deploys running now.",
			}, func() float64 { return float64(len(inFlight())) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "previewd_oldest_in_flight_deploy_age_seconds",
				Help: "Age of the oldest running deploy (0 when none); alert on this for stuck deploys.",
			}, func() float64 {
				var oldest float64
				for _, t := range inFlight() {
					oldest = max(oldest, time.Since(t).Seconds())
				}
				return oldest
			}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering reconcile metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) deployFinished(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.deploys.WithLabelValues(outcome).Inc()
	m.deployDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

func (m *Metrics) observeLatency(d time.Duration) {
	if m == nil {
		return
	}
	m.deployLatency.Observe(d.Seconds())
}

func (m *Metrics) deletionFinished(err error, d time.Duration) {
	if m == nil {
		return
	}
	if err != nil {
		m.deletions.WithLabelValues("error").Inc()
		return
	}
	m.deletions.WithLabelValues("ok").Inc()
	m.deletionDuration.Observe(d.Seconds())
}

func (m *Metrics) cycle(start, end time.Time, err error, rows []model.Preview, planned []Action) {
	if m == nil {
		return
	}
	m.cycleDuration.Observe(end.Sub(start).Seconds())
	m.lastAttempt.Set(float64(end.Unix()))
	if err != nil {
		m.cycleErrors.Inc()
		m.cycles.WithLabelValues("error").Inc()
	} else {
		m.cycles.WithLabelValues("ok").Inc()
		m.lastSuccess.Set(float64(end.Unix()))
	}
	if rows != nil {
		counts := map[string]float64{}
		for _, p := range rows {
			counts[string(p.Status)]++
		}
		for _, s := range model.LiveStatuses {
			m.previews.WithLabelValues(string(s)).Set(counts[string(s)])
		}
	}
	for _, a := range planned {
		m.plannedActions.WithLabelValues(string(a.Kind)).Inc()
	}
}

// repositories records each configured repository's read and the
// orphaned previews by repository; series of repositories no longer
// configured (or no longer orphaned) go.
func (m *Metrics) repositories(end time.Time, repos []RepoObservation, res Result) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	synced := make(map[string]time.Time, len(repos))
	m.repoUp.Reset()
	for _, ro := range repos {
		v := 0.0
		if ro.Complete {
			v, synced[ro.Repo] = 1, end
		} else if t, ok := m.synced[ro.Repo]; ok {
			synced[ro.Repo] = t
		}
		m.repoUp.WithLabelValues(ro.Repo).Set(v)
	}
	m.synced = synced
	m.repoLastSuccess.Reset()
	for repo, t := range synced {
		m.repoLastSuccess.WithLabelValues(repo).Set(float64(t.Unix()))
	}
	orphans := map[string]float64{}
	for _, s := range res.Skipped {
		if s.State == StateOrphaned {
			orphans[s.Repo]++
		}
	}
	m.orphans.Reset()
	for repo, n := range orphans {
		m.orphans.WithLabelValues(repo).Set(n)
	}
}

// standBy drops the per-repository series of a process that stopped
// leading: its last values would otherwise stand next to the new
// leader's (and a stale 1 hide a 0 under the alerts' max).
func (m *Metrics) standBy() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.synced = nil
	m.repoUp.Reset()
	m.repoLastSuccess.Reset()
	m.orphans.Reset()
}
