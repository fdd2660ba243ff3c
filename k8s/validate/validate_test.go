package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// The kustomizations under test, relative to this package.
var targets = []string{"../base", "../overlays/dev", "../overlays/prod"}

const secretTemplate = "../overlays/prod/secret.example.yaml"

// TestMain learns the settings the binary reads from .env.example, so that
// KnownEnv follows the configuration as it grows.
func TestMain(m *testing.M) {
	n, err := LoadKnownEnv("../../.env.example")
	if err != nil || n == 0 {
		fmt.Fprintf(os.Stderr, "../../.env.example: %d settings, %v\n", n, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// rendered keeps each kustomization's output: rendering runs kubectl (most of
// this package's time), decoding is cheap, and every caller gets fresh
// objects it may mutate.
var rendered sync.Map // dir -> []byte

// MustRender renders dir and decodes it strictly, failing the test on any error.
func MustRender(tb testing.TB, dir string) []Object {
	tb.Helper()
	out, ok := rendered.Load(dir)
	if !ok {
		b, err := Render(dir)
		if err != nil {
			tb.Fatal(err)
		}
		out, _ = rendered.LoadOrStore(dir, b)
	}
	objs, err := DecodeStrict(out.([]byte))
	if err != nil {
		tb.Fatalf("%s: %v", dir, err)
	}
	return objs
}

// MustTemplate decodes the Secret template, which the overlays reference but
// do not render.
func MustTemplate(tb testing.TB) []Object {
	tb.Helper()
	data, err := os.ReadFile(secretTemplate)
	if err != nil {
		tb.Fatal(err)
	}
	objs, err := DecodeStrict(data)
	if err != nil {
		tb.Fatalf("%s: %v", secretTemplate, err)
	}
	return objs
}

func kindsOf(objs []Object) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.Kind]++
	}
	return n
}

func find[T any](tb testing.TB, objs []Object) T {
	tb.Helper()
	for _, o := range objs {
		if v, ok := o.Value.(T); ok {
			return v
		}
	}
	var zero T
	tb.Fatalf("no %T rendered", zero)
	return zero
}

func TestRender_StrictDecode(t *testing.T) {
	want := map[string]map[string]int{
		"../base": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "Deployment": 1,
			"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1},
		"../overlays/dev": {"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 1, "Secret": 1,
			"Service": 1, "Deployment": 1, "PodDisruptionBudget": 1},
		"../overlays/prod": {"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 2, "Service": 1,
			"Deployment": 1, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1,
			"PrometheusRule": 1},
	}
	for _, dir := range targets {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := kindsOf(MustRender(t, dir))
			if fmt.Sprint(got) != fmt.Sprint(want[dir]) {
				t.Fatalf("rendered kinds = %v, want %v", got, want[dir])
			}
		})
	}
}

func TestCheck_RenderedOverlays(t *testing.T) {
	tmpl := MustTemplate(t)
	for _, dir := range targets {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := MustRender(t, dir)
			ext := tmpl
			if dir == "../overlays/dev" {
				ext = nil // dev generates its own Secret
			}
			if errs := Check(objs, ext...); len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
		})
	}
}

func TestOverlays_Specifics(t *testing.T) {
	t.Run("Dev", func(t *testing.T) {
		objs := MustRender(t, "../overlays/dev")
		d := find[*appsv1.Deployment](t, objs)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("dev replicas = %v, want 1 (embedded SQLite is per pod)", d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("dev strategy = %s, want Recreate", d.Spec.Strategy.Type)
		}
		s := find[*corev1.Secret](t, objs)
		if _, ok := s.Data["MYSQL_DSN"]; ok {
			t.Error("dev Secret sets MYSQL_DSN; dev runs embedded")
		}
	})
	t.Run("Prod", func(t *testing.T) {
		objs := MustRender(t, "../overlays/prod")
		d := find[*appsv1.Deployment](t, objs)
		if img := d.Spec.Template.Spec.Containers[0].Image; !regexp.MustCompile(`^ghcr\.io/api-perf/api-perf:\d+\.\d+\.\d+$`).MatchString(img) {
			t.Errorf("prod image = %q, want a released ghcr.io version", img)
		}
		if v := d.Spec.Template.Annotations["prometheus.io/scrape"]; v != "false" {
			t.Errorf("prod scrape annotation = %q, want \"false\" beside the ServiceMonitor", v)
		}
		h := find[*autoscalingv2.HorizontalPodAutoscaler](t, objs)
		if *h.Spec.MinReplicas < 3 {
			t.Errorf("prod minReplicas = %d, want at least 3", *h.Spec.MinReplicas)
		}
		for _, o := range objs {
			if o.Kind == "Secret" {
				t.Error("prod renders a Secret; applying it would overwrite the real credentials")
			}
		}
	})
}

// TestDecodeStrict_RejectsTypos proves that decoding is strict: each document
// is valid YAML that a lenient decoder would accept.
func TestDecodeStrict_RejectsTypos(t *testing.T) {
	deployment := func(containerExtra string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers:
        - name: api
          image: api-perf
` + containerExtra
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"Valid", deployment("          readinessProbe:\n            httpGet: {path: /readyz, port: 8080}\n"), ""},
		{"UnknownField", deployment("          readinesProbe:\n            httpGet: {path: /readyz, port: 8080}\n"), `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"WrongCase", deployment("          ReadinessProbe:\n            httpGet: {path: /readyz, port: 8080}\n"), `unknown field "spec.template.spec.containers[0].ReadinessProbe"`},
		{"MisplacedField", deployment("          terminationGracePeriodSeconds: 30\n"), `unknown field "spec.template.spec.containers[0].terminationGracePeriodSeconds"`},
		{"DuplicateKey", deployment("          image: other\n"), `"image" already set`},
		{"WrongType", strings.Replace(deployment(""), "spec:\n  selector", "spec:\n  replicas: two\n  selector", 1), "cannot unmarshal string"},
		{"UnknownKind", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "unregistered kind v1/Pod"},
		{"ServiceMonitorTypo", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec:\n  selector: {}\n  endpoints:\n    - port: metrics\n      scrapeTimout: 10s\n", `unknown field "spec.endpoints[0].scrapeTimout"`},
		{"HPATypo", "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec:\n  scaleTargetRef: {kind: Deployment, name: d}\n  maxReplicas: 3\n  behavior:\n    scaleDown:\n      stabilisationWindowSeconds: 300\n", `unknown field "spec.behavior.scaleDown.stabilisationWindowSeconds"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeStrict([]byte(tc.doc))
			if tc.want == "" {
				if err != nil || len(objs) != 1 {
					t.Fatalf("DecodeStrict = %d objects, %v; want 1, nil", len(objs), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeStrict accepted the document; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestRender_TypoInPatchFails shows the whole path on a real kustomization:
// kustomize accepts a misspelled field in a patch and renders it, and only
// the strict decode catches it.
func TestRender_TypoInPatchFails(t *testing.T) {
	base, err := filepath.Abs("../base")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize refuses absolute resource paths but follows relative ones.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	kustomization := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ` + rel + `
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: api-perf
      spec:
        template:
          spec:
            terminationGracePeriodSecond: 60
`
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "terminationGracePeriodSecond: 60") {
		t.Fatalf("kustomize dropped the misspelled field; the test no longer shows anything:\n%s", out)
	}
	_, err = DecodeStrict(out)
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.template.spec.terminationGracePeriodSecond"`) {
		t.Fatalf("DecodeStrict error = %v, want the misspelled field named", err)
	}
}

// TestCheck_Violations breaks one invariant at a time in the rendered prod
// overlay and expects Check to name it.
func TestCheck_Violations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(d *appsv1.Deployment, cm *corev1.ConfigMap, h *autoscalingv2.HorizontalPodAutoscaler, m *monitoringv1.ServiceMonitor)
		want   string
	}{
		{"GraceShorterThanDrain", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			g := int64(20)
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "must stay below terminationGracePeriodSeconds"},
		{"ShutdownTimeoutTooLong", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			cm.Data["SHUTDOWN_TIMEOUT"] = "30s"
		}, "SHUTDOWN_TIMEOUT 30s must stay below"},
		{"ShutdownTimeoutMissing", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			delete(cm.Data, "SHUTDOWN_TIMEOUT")
		}, "SHUTDOWN_TIMEOUT \"\" is not a duration"},
		{"ExecPreStop", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.Containers[0].Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, "needs a preStop sleep action"},
		{"ReadinessOnHealthz", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz"
		}, `readinessProbe probes "/healthz", want "/readyz"`},
		{"LivenessOnReadyz", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path = "/readyz"
		}, `livenessProbe probes "/readyz", want "/healthz"`},
		{"NoStartupProbe", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.Containers[0].StartupProbe = nil
		}, "startupProbe must be an httpGet probe"},
		{"CapabilitiesKept", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil
		}, "capabilities must drop ALL"},
		{"WritableRoot", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			f := false
			d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem must be true"},
		{"NoSeccomp", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Spec.SecurityContext.SeccompProfile = nil
		}, "seccompProfile must be RuntimeDefault"},
		{"ReplicasUnderHPA", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			r := int32(3)
			d.Spec.Replicas = &r
		}, "sets replicas while an HPA scales it"},
		{"MisspelledVariable", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			cm.Data["LOG_LEVLE"] = "debug"
		}, "unknown environment variable LOG_LEVLE"},
		{"HTTPAddrMismatch", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			cm.Data["HTTP_ADDR"] = ":8081"
		}, "HTTP_ADDR \":8081\" listens elsewhere"},
		{"MetricsAddrMismatch", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			cm.Data["METRICS_ADDR"] = ":9100"
		}, "METRICS_ADDR \":9100\" has no matching container port"},
		{"MetricsOnAPIPort", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			delete(cm.Data, "METRICS_ADDR")
		}, "METRICS_ADDR is not set"},
		{"PprofExposed", func(_ *appsv1.Deployment, cm *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			cm.Data["PPROF_ADDR"] = ":6060"
		}, "PPROF_ADDR \":6060\" is reachable from outside the pod"},
		{"NoCPURequest", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			delete(d.Spec.Template.Spec.Containers[0].Resources.Requests, corev1.ResourceCPU)
		}, "resources.requests.cpu is not set"},
		{"FlappingHPA", func(_ *appsv1.Deployment, _ *corev1.ConfigMap, h *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			w := int32(0)
			h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds = &w
		}, "stabilizationWindowSeconds must be at least 60"},
		{"HPATargetsNothing", func(_ *appsv1.Deployment, _ *corev1.ConfigMap, h *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			h.Spec.ScaleTargetRef.Name = "api-perff"
		}, "scaleTargetRef Deployment api-perff is not a rendered Deployment"},
		{"ServiceMonitorWrongPort", func(_ *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, m *monitoringv1.ServiceMonitor) {
			m.Spec.Endpoints[0].Port = "metric"
		}, `endpoint port "metric" is not a port name`},
		{"PodLabelsChanged", func(d *appsv1.Deployment, _ *corev1.ConfigMap, _ *autoscalingv2.HorizontalPodAutoscaler, _ *monitoringv1.ServiceMonitor) {
			d.Spec.Template.Labels["app.kubernetes.io/component"] = "web"
		}, "Service api-perf: selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := MustRender(t, "../overlays/prod")
			tc.mutate(find[*appsv1.Deployment](t, objs), find[*corev1.ConfigMap](t, objs),
				find[*autoscalingv2.HorizontalPodAutoscaler](t, objs), find[*monitoringv1.ServiceMonitor](t, objs))
			errs := Check(objs, MustTemplate(t)...)
			joined := errors.Join(errs...)
			if joined == nil || !strings.Contains(joined.Error(), tc.want) {
				t.Fatalf("Check = %v\nwant an error containing %q", joined, tc.want)
			}
		})
	}
}

func TestCheck_MissingSecret(t *testing.T) {
	errs := Check(MustRender(t, "../overlays/prod")) // no template
	joined := errors.Join(errs...)
	if joined == nil || !strings.Contains(joined.Error(), "envFrom Secret api-perf-secrets is neither rendered nor provided") {
		t.Fatalf("Check = %v, want the unresolved Secret reported", joined)
	}
}

func TestSecretTemplate_PlaceholdersOnly(t *testing.T) {
	objs := MustTemplate(t)
	if len(objs) != 1 || objs[0].Kind != "Secret" {
		t.Fatalf("template holds %v, want one Secret", kindsOf(objs))
	}
	s := objs[0].Value.(*corev1.Secret)
	if len(s.Data) > 0 {
		t.Error("template uses data; keep placeholders readable in stringData")
	}
	for _, key := range []string{"MYSQL_DSN", "REDIS_URL", "API_KEYS"} {
		v, ok := s.StringData[key]
		if !ok {
			t.Errorf("template lacks %s", key)
		} else if !strings.Contains(v, "CHANGE_ME") {
			t.Errorf("%s = %q holds no CHANGE_ME placeholder; real credentials never go in the repository", key, v)
		}
	}
	for key := range s.StringData {
		if !KnownEnv[key] {
			t.Errorf("template key %s is not a known variable", key)
		}
	}
}

// adapterValues is the part of the prometheus-adapter Helm values this
// repository sets; decoding is strict, so a misspelled key fails.
type adapterValues struct {
	Rules struct {
		Default bool `json:"default"`
		Custom  []struct {
			SeriesQuery string `json:"seriesQuery"`
			Resources   struct {
				Overrides map[string]struct {
					Resource string `json:"resource"`
				} `json:"overrides"`
			} `json:"resources"`
			Name struct {
				Matches string `json:"matches"`
				As      string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"custom"`
	} `json:"rules"`
}

// TestPrometheusAdapter_ServesHPAMetric checks that the adapter rule produces
// exactly the Pods metric name the HPA asks for.
func TestPrometheusAdapter_ServesHPAMetric(t *testing.T) {
	data, err := os.ReadFile("../prometheus-adapter/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	var values adapterValues
	strictErrs, err := sigsjson.UnmarshalStrict(js, &values)
	if err != nil || len(strictErrs) > 0 {
		t.Fatalf("values.yaml: %v %v", err, strictErrs)
	}
	served := map[string]bool{}
	for _, r := range values.Rules.Custom {
		series := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`).FindString(r.SeriesQuery)
		re, err := regexp.Compile(r.Name.Matches)
		if err != nil {
			t.Fatalf("name.matches %q: %v", r.Name.Matches, err)
		}
		if !re.MatchString(series) {
			t.Errorf("name.matches %q does not match series %q", r.Name.Matches, series)
			continue
		}
		served[re.ReplaceAllString(series, r.Name.As)] = true
		for _, label := range []string{"namespace", "pod"} {
			if r.Resources.Overrides[label].Resource != label {
				t.Errorf("rule for %s does not map label %s to the %s resource; Pods metrics need both", series, label, label)
			}
		}
		if !strings.Contains(r.MetricsQuery, "rate(<<.Series>>") {
			t.Errorf("rule for %s: metricsQuery %q is not a rate of the counter", series, r.MetricsQuery)
		}
	}
	h := find[*autoscalingv2.HorizontalPodAutoscaler](t, MustRender(t, "../base"))
	pods := 0
	for _, m := range h.Spec.Metrics {
		if m.Type != autoscalingv2.PodsMetricSourceType {
			continue
		}
		pods++
		if !served[m.Pods.Metric.Name] {
			t.Errorf("HPA Pods metric %q is not produced by any adapter rule (rules produce %v)", m.Pods.Metric.Name, served)
		}
	}
	if pods == 0 {
		t.Error("HPA has no Pods metric; the request-rate scaling is gone")
	}
}

// TestGrafanaDashboard_Component: the component renders the dashboard file
// unchanged into a ConfigMap that Grafana's sidecar picks up.
func TestGrafanaDashboard_Component(t *testing.T) {
	file, err := os.ReadFile("../components/grafana-dashboard/api-perf.json")
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(file, &dashboard); err != nil || dashboard.UID == "" || len(dashboard.Panels) == 0 {
		t.Fatalf("api-perf.json: uid %q, %d panels, %v", dashboard.UID, len(dashboard.Panels), err)
	}
	var cm *corev1.ConfigMap
	for _, o := range MustRender(t, "../overlays/prod") {
		if c, ok := o.Value.(*corev1.ConfigMap); ok && c.Name == "api-perf-grafana-dashboard" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("the prod overlay renders no api-perf-grafana-dashboard ConfigMap")
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard: \"1\", which the sidecar selects on", cm.Labels)
	}
	if cm.Data["api-perf.json"] != string(file) {
		t.Error("the ConfigMap's api-perf.json differs from the file")
	}
	// Kubernetes refuses objects over 1 MiB; a ConfigMap applied with
	// kubectl apply also carries a copy in an annotation capped at 256 KiB.
	if len(file) > 200<<10 {
		t.Errorf("api-perf.json is %d bytes; keep it well under kubectl apply's 256 KiB annotation", len(file))
	}
}
