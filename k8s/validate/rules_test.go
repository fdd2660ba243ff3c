package validate

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	rulesDir    = "../components/prometheus-rules"
	runbookPath = "../../docs/runbook.md"
	runbookURL  = "https://github.com/api-perf/api-perf/blob/main/docs/runbook.md#"
)

// MustPrometheusRule returns the PrometheusRule the prod overlay renders.
func MustPrometheusRule(tb testing.TB) *monitoringv1.PrometheusRule {
	tb.Helper()
	return find[*monitoringv1.PrometheusRule](tb, MustRender(tb, "../overlays/prod"))
}

// lookPromtool finds promtool, which fails the test in CI and skips it
// elsewhere when missing (make tools installs it from Debian's prometheus).
func lookPromtool(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("promtool is required in CI (Debian package prometheus; make tools installs it)")
		}
		tb.Skip("promtool not installed (apt-get install prometheus)")
	}
	return path
}

func promtool(t *testing.T, bin, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out.String())
}

// TestPrometheusRule_Promtool writes the rendered PrometheusRule's groups as
// a Prometheus rules file and runs promtool on it: check rules (syntax,
// templates, duplicate names) and test rules with tests.yml, whose cases
// show every alert firing when it should and staying quiet when it should
// not.
func TestPrometheusRule_Promtool(t *testing.T) {
	bin := lookPromtool(t)
	rule := MustPrometheusRule(t)
	groups, err := sigsyaml.Marshal(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), groups, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(rulesDir, "tests.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, bin, dir, "check", "rules", "rules.yml")
	promtool(t, bin, dir, "test", "rules", "tests.yml")
}

// TestPrometheusRule_EveryAlertTestedAndDocumented: each alert has a
// severity, a summary, a runbook_url pointing at its own section of
// docs/runbook.md, and at least one promtool case that expects it to fire.
func TestPrometheusRule_EveryAlertTestedAndDocumented(t *testing.T) {
	rule := MustPrometheusRule(t)
	runbook, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)\s*$`).FindAllStringSubmatch(string(runbook), -1) {
		sections[strings.ToLower(m[1])] = true
	}
	tests, err := os.ReadFile(filepath.Join(rulesDir, "tests.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := sigsyaml.Unmarshal(tests, &cases); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range cases.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical (pages) or warning (tickets)", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL)
			if !ok || anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q, want %s%s", r.Alert, r.Annotations["runbook_url"], runbookURL, strings.ToLower(r.Alert))
			} else if !sections[anchor] {
				t.Errorf("%s: docs/runbook.md has no section \"## %s\"", r.Alert, r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: tests.yml must show it firing (%v) and staying quiet (%v)", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts < 8 {
		t.Fatalf("only %d alerts found; the SLO and cause alerts are gone", alerts)
	}
}
