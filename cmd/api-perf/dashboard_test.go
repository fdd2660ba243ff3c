package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/api-perf/api-perf/internal/testenv"
)

// dashboardPath is the Grafana dashboard shipped in the kustomize
// component (and importable as a file).
const dashboardPath = "../../k8s/components/grafana-dashboard/api-perf.json"

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Panels      []dashboardPanel `json:"panels"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID      int              `json:"id"`
	Type    string           `json:"type"`
	Title   string           `json:"title"`
	Panels  []dashboardPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// query is one PromQL expression of the dashboard and where it is.
type query struct{ where, expr string }

func loadDashboard(t *testing.T) (dashboard, []query) {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var qs []query
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q target %d", p.Title, i), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			qs = append(qs, query{fmt.Sprintf("annotation %q", a.Name), a.Expr})
		}
	}
	return d, qs
}

// grafanaVariables stand in for the dashboard's variables so that its
// queries parse as plain PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")

// scrapedSeries reads a text exposition into the series names a query can
// select (a histogram's _bucket, _sum and _count, a summary's quantiles,
// _sum and _count) and the label names each carries.
func scrapedSeries(t *testing.T, exposition string) map[string]map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]map[string]bool{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if series[name] == nil {
			series[name] = map[string]bool{}
		}
		for _, l := range m.GetLabel() {
			series[name][l.GetName()] = true
		}
		for _, l := range extra {
			series[name][l] = true
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return series
}

// targetLabels are attached by Prometheus at scrape time, not by the
// server, so no scrape of the server shows them.
var targetLabels = map[string]bool{"job": true, "instance": true, "__name__": true}

// checkQuery parses expr and reports every metric it selects that the
// scrape lacks, and every label it matches on or groups by that none of
// the selected series carries.
func checkQuery(expr string, series map[string]map[string]bool) (metrics []string, problems []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		return nil, []string{"does not parse: " + err.Error()}
	}
	var selected []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selected = append(selected, vs.Name)
		labels, exists := series[vs.Name]
		if !exists {
			problems = append(problems, fmt.Sprintf("metric %s is not exported", vs.Name))
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if !targetLabels[m.Name] && !labels[m.Name] {
				problems = append(problems, fmt.Sprintf("metric %s has no label %s", vs.Name, m.Name))
			}
		}
		return nil
	})
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok {
			return nil
		}
		for _, l := range agg.Grouping {
			found := targetLabels[l]
			parser.Inspect(agg.Expr, func(inner parser.Node, _ []parser.Node) error {
				if vs, ok := inner.(*parser.VectorSelector); ok && series[vs.Name][l] {
					found = true
				}
				return nil
			})
			if !found {
				problems = append(problems, fmt.Sprintf("groups by %s, which none of its metrics carries", l))
			}
		}
		return nil
	})
	return selected, problems
}

// TestDashboard_QueriesMatchScrape drives a little traffic through the real
// program on MariaDB and Redis, scrapes /metrics, and checks every query of
// the Grafana dashboard against the scrape: it parses, each metric it
// selects is exported, and each label it filters or groups on exists.
func TestDashboard_QueriesMatchScrape(t *testing.T) {
	d, queries := loadDashboard(t)
	if len(queries) < 20 {
		t.Fatalf("only %d queries found in %s; the reader no longer understands the file", len(queries), dashboardPath)
	}
	// The read-replica panels need a replica: the program runs on the
	// shared private primary and replica.
	pair := testenv.SharedReplicaPair(t)
	primary, replica := pair.Database(t)
	base, _ := startRun(t, map[string]string{
		"MYSQL_DSN":        primary,
		"MYSQL_READ_DSN":   replica,
		"REDIS_URL":        "redis://" + testenv.RedisAddr(),
		"REDIS_KEY_PREFIX": testenv.UniqueName("dashboard-") + ":",
		"RATE_LIMIT_READ":  "1000/1s,burst=1000",
	})
	call(t, "POST", base+"/products", `{"name":"d","price":1}`)
	call(t, "GET", base+"/products/1", "")
	call(t, "GET", base+"/products/999", "")
	call(t, "GET", base+"/products", "")
	call(t, "POST", base+"/orders", `{"product_id":1,"quantity":1}`)
	status, body := call(t, "GET", base+"/metrics", "")
	if status != 200 {
		t.Fatalf("scrape: %d", status)
	}
	series := scrapedSeries(t, body)

	used := map[string]bool{}
	for _, q := range queries {
		metrics, problems := checkQuery(q.expr, series)
		for _, p := range problems {
			t.Errorf("%s: %s\n  %s", q.where, p, q.expr)
		}
		for _, m := range metrics {
			used[m] = true
		}
	}
	// Template variables use Grafana's label_values(metric, label).
	for _, v := range d.Templating.List {
		if m := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`).FindStringSubmatch(v.Definition); m != nil {
			if series[m[1]] == nil {
				t.Errorf("variable %s: metric %s is not exported", v.Name, m[1])
			}
		}
	}
	// The dashboard covers each area it promises.
	for _, m := range []string{"apiperf_http_requests_total", "apiperf_http_request_duration_seconds_bucket",
		"apiperf_cache_requests_total", "apiperf_cache_fallbacks_total", "apiperf_ratelimit_decisions_total",
		"apiperf_ratelimit_fallbacks_total", "go_sql_wait_count_total", "go_sql_wait_duration_seconds_total",
		"go_goroutines", "apiperf_build_info", "apiperf_db_reads_total", "apiperf_db_replica_lag_seconds",
		"apiperf_db_replica_healthy", "apiperf_db_read_fallbacks_total", "apiperf_order_batch_size_bucket",
		"apiperf_order_queue_wait_seconds_bucket", "apiperf_order_commit_seconds_bucket", "apiperf_order_queue_full_total"} {
		if !used[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
}

// TestDashboard_Structure: panel ids are unique (Grafana links and
// provisioning rely on them) and every non-row panel has a query.
func TestDashboard_Structure(t *testing.T) {
	d, _ := loadDashboard(t)
	var ids []int
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if slices.Contains(ids, p.ID) {
				t.Errorf("panel %q reuses id %d", p.Title, p.ID)
			}
			ids = append(ids, p.ID)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

// TestDashboard_CheckQueryCatches shows that checkQuery would catch the
// mistakes it is there for.
func TestDashboard_CheckQueryCatches(t *testing.T) {
	series := map[string]map[string]bool{"apiperf_http_requests_total": {"route": true, "status": true}}
	for expr, want := range map[string]string{
		`rate(apiperf_http_request_total[5m])`:                                "metric apiperf_http_request_total is not exported",
		`rate(apiperf_http_requests_total{code="500"}[5m])`:                   "has no label code",
		`sum by (path) (rate(apiperf_http_requests_total[5m]))`:               "groups by path",
		`sum(rate(apiperf_http_requests_total{job=~"$job"}[$__rate_interval]`: "does not parse",
	} {
		_, problems := checkQuery(expr, series)
		if !strings.Contains(strings.Join(problems, "; "), want) {
			t.Errorf("%s: problems %v, want one containing %q", expr, problems, want)
		}
	}
	if _, problems := checkQuery(`sum by (route, job) (rate(apiperf_http_requests_total{status=~"5..", instance=~"$instance"}[$__rate_interval]))`, series); len(problems) > 0 {
		t.Errorf("a correct query was reported: %v", problems)
	}
}
