package validate

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// KnownEnv lists the environment variables a container may be given: the
// settings the binary reads (README's configuration table) and the Go
// runtime's own.
// A name outside this list is most likely a typo that the binary would
// silently ignore. LoadKnownEnv adds the rest from .env.example, which lists
// every setting the binary reads.
var KnownEnv = map[string]bool{
	"HTTP_ADDR": true, "METRICS_ADDR": true, "MYSQL_DSN": true, "DATA_DIR": true,
	"REDIS_URL": true, "REDIS_CLIENT_CACHE": true, "CACHE_TTL": true,
	"RATE_LIMIT_READ": true, "RATE_LIMIT_WRITE": true, "RATE_LIMIT_FAILURE": true,
	"TRUSTED_PROXIES": true, "API_KEYS": true,
	"DB_MAX_OPEN_CONNS": true, "DB_MAX_IDLE_CONNS": true, "DB_QUERY_TIMEOUT": true,
	"SHUTDOWN_TIMEOUT": true, "LOG_LEVEL": true, "LOG_FORMAT": true,
	"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true,
}

// envLine matches a variable in an env file, commented out or not:
// "NAME=value" or "# NAME=value".
var envLine = regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)=`)

// LoadKnownEnv adds to KnownEnv every variable named in the env file at path
// (the repository's .env.example) and returns how many it found.
func LoadKnownEnv(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read the list of settings: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := envLine.FindStringSubmatch(sc.Text()); m != nil {
			KnownEnv[m[1]] = true
			n++
		}
	}
	return n, sc.Err()
}

// The probe paths the binary serves: liveness touches no dependency,
// readiness checks them.
const (
	LivenessPath  = "/healthz"
	ReadinessPath = "/readyz"
)

// MinScaleDownWindow is the shortest scale-down stabilization window accepted,
// in seconds; anything shorter lets the replica count flap between bursts.
const MinScaleDownWindow = 60

// index holds the objects by kind and name.
type index struct {
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	services    []*corev1.Service
	deployments map[string]*appsv1.Deployment
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	monitors    []*monitoringv1.ServiceMonitor
}

func newIndex(objs []Object) *index {
	ix := &index{
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		deployments: map[string]*appsv1.Deployment{},
	}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			ix.configMaps[v.Name] = v
		case *corev1.Secret:
			ix.secrets[v.Name] = v
		case *corev1.Service:
			ix.services = append(ix.services, v)
		case *appsv1.Deployment:
			ix.deployments[v.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			ix.hpas = append(ix.hpas, v)
		case *policyv1.PodDisruptionBudget:
			ix.pdbs = append(ix.pdbs, v)
		case *monitoringv1.ServiceMonitor:
			ix.monitors = append(ix.monitors, v)
		}
	}
	return ix
}

// Check returns every broken invariant among objs. external holds objects
// that exist in the cluster without being rendered (the Secret created from
// its template), so that references to them resolve.
func Check(objs []Object, external ...Object) []error {
	ix := newIndex(append(append([]Object(nil), objs...), external...))
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	scaled := map[string]bool{}
	for _, h := range ix.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ix.deployments[ref.Name] == nil {
			fail("HorizontalPodAutoscaler %s: scaleTargetRef %s %s is not a rendered Deployment", h.Name, ref.Kind, ref.Name)
		}
		scaled[ref.Name] = true
		checkHPA(h, fail)
	}
	for _, d := range ix.deployments {
		if scaled[d.Name] && d.Spec.Replicas != nil {
			fail("Deployment %s: sets replicas while an HPA scales it; every apply would reset the HPA's count", d.Name)
		}
		checkDeployment(ix, d, fail)
	}
	for _, s := range ix.services {
		d := ix.selected(s.Spec.Selector)
		if d == nil {
			fail("Service %s: selector %v matches no rendered Deployment's pods", s.Name, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			if findPort(d.Spec.Template.Spec.Containers, p.TargetPort) == nil {
				fail("Service %s: port %s targets %s, which no container of Deployment %s declares", s.Name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	for _, p := range ix.pdbs {
		if p.Spec.Selector == nil || ix.selected(p.Spec.Selector.MatchLabels) == nil {
			fail("PodDisruptionBudget %s: selector matches no rendered Deployment's pods", p.Name)
		}
	}
	for _, m := range ix.monitors {
		var svc *corev1.Service
		for _, s := range ix.services {
			if len(m.Spec.Selector.MatchLabels) > 0 && subset(m.Spec.Selector.MatchLabels, s.Labels) {
				svc = s
			}
		}
		if svc == nil {
			fail("ServiceMonitor %s: selector matches no rendered Service", m.Name)
			continue
		}
		for _, ep := range m.Spec.Endpoints {
			found := false
			for _, sp := range svc.Spec.Ports {
				found = found || sp.Name == ep.Port
			}
			if !found {
				fail("ServiceMonitor %s: endpoint port %q is not a port name of Service %s", m.Name, ep.Port, svc.Name)
			}
		}
	}
	return errs
}

// selected returns the Deployment whose pod template carries every label of
// selector, or nil.
func (ix *index) selected(selector map[string]string) *appsv1.Deployment {
	if len(selector) == 0 {
		return nil
	}
	for _, d := range ix.deployments {
		if subset(selector, d.Spec.Template.Labels) {
			return d
		}
	}
	return nil
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func checkHPA(h *autoscalingv2.HorizontalPodAutoscaler, fail func(string, ...any)) {
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		fail("HorizontalPodAutoscaler %s: minReplicas below 2 leaves a single pod, which every disruption takes down", h.Name)
	}
	hasCPU := false
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU {
			hasCPU = true
		}
	}
	if !hasCPU {
		fail("HorizontalPodAutoscaler %s: no CPU metric; it is the one that works without prometheus-adapter", h.Name)
	}
	b := h.Spec.Behavior
	if b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil ||
		*b.ScaleDown.StabilizationWindowSeconds < MinScaleDownWindow {
		fail("HorizontalPodAutoscaler %s: behavior.scaleDown.stabilizationWindowSeconds must be at least %d to avoid flapping", h.Name, MinScaleDownWindow)
	}
	if b == nil || b.ScaleUp == nil || len(b.ScaleUp.Policies) == 0 {
		fail("HorizontalPodAutoscaler %s: behavior.scaleUp needs explicit policies", h.Name)
	}
}

func checkDeployment(ix *index, d *appsv1.Deployment, fail func(string, ...any)) {
	spec := d.Spec.Template.Spec
	if d.Spec.Selector == nil || !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		fail("Deployment %s: selector does not match its own pod template's labels", d.Name)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		fail("Deployment %s: pod securityContext.runAsNonRoot must be true", d.Name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("Deployment %s: pod securityContext.seccompProfile must be RuntimeDefault", d.Name)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		fail("Deployment %s: pod runs as UID 0", d.Name)
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
		env := resolveEnv(ix, c, where, fail)
		checkContainerSecurity(c, where, fail)
		checkResources(c, where, fail)

		httpPort := containerPort(c, "http")
		if httpPort == nil {
			fail("%s: no container port named http", where)
		} else if want, ok := addrPort(env["HTTP_ADDR"], 8080); !ok || want != httpPort.ContainerPort {
			fail("%s: port http is %d but HTTP_ADDR %q listens elsewhere", where, httpPort.ContainerPort, env["HTTP_ADDR"])
		}
		// /metrics and pprof stay off the API port that the Service and
		// any Ingress expose: metrics on their own port, pprof off or on
		// loopback only.
		if env["METRICS_ADDR"] == "" {
			fail("%s: METRICS_ADDR is not set, so /metrics is served on the public API port", where)
		}
		if addr := env["PPROF_ADDR"]; addr != "" && !loopbackAddr(addr) {
			fail("%s: PPROF_ADDR %q is reachable from outside the pod; leave it unset or bind it to 127.0.0.1", where, addr)
		}
		if addr := env["METRICS_ADDR"]; addr != "" {
			mp := containerPort(c, "metrics")
			if want, ok := addrPort(addr, 0); mp == nil || !ok || want != mp.ContainerPort {
				fail("%s: METRICS_ADDR %q has no matching container port named metrics", where, addr)
			} else if ann, set := d.Spec.Template.Annotations["prometheus.io/port"]; set && ann != strconv.Itoa(int(mp.ContainerPort)) {
				fail("Deployment %s: prometheus.io/port annotation %q is not the metrics port %d", d.Name, ann, mp.ContainerPort)
			}
		}

		checkProbe(c, "startupProbe", c.StartupProbe, LivenessPath, httpPort, where, fail)
		checkProbe(c, "livenessProbe", c.LivenessProbe, LivenessPath, httpPort, where, fail)
		checkProbe(c, "readinessProbe", c.ReadinessProbe, ReadinessPath, httpPort, where, fail)

		// The shutdown budget: the preStop sleep and the server's drain must
		// both fit in the grace period, or the kubelet kills requests in flight.
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			fail("%s: needs a preStop sleep action (the distroless image has no shell for an exec sleep)", where)
			continue
		}
		preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		shutdown, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
		if err != nil {
			fail("%s: SHUTDOWN_TIMEOUT %q is not a duration; set it explicitly so the budget can be checked", where, env["SHUTDOWN_TIMEOUT"])
			continue
		}
		if preStop <= 0 {
			fail("%s: preStop sleep must be positive so endpoints drop the pod before SIGTERM", where)
		}
		if limit := time.Duration(grace) * time.Second; preStop+shutdown >= limit {
			fail("%s: preStop sleep %v + SHUTDOWN_TIMEOUT %v must stay below terminationGracePeriodSeconds %v", where, preStop, shutdown, limit)
		}
	}
}

// resolveEnv returns the container's environment as far as the rendered
// objects define it, reporting references that do not resolve and names the
// binary does not know.
func resolveEnv(ix *index, c *corev1.Container, where string, fail func(string, ...any)) map[string]string {
	env := map[string]string{}
	set := func(source, name, value string) {
		if !KnownEnv[name] {
			fail("%s: unknown environment variable %s (from %s)", where, name, source)
		}
		env[name] = value
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := ix.configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				fail("%s: envFrom ConfigMap %s is not rendered", where, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				set("ConfigMap "+cm.Name, from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			s := ix.secrets[from.SecretRef.Name]
			if s == nil {
				fail("%s: envFrom Secret %s is neither rendered nor provided by a template", where, from.SecretRef.Name)
				continue
			}
			for k, v := range s.StringData {
				set("Secret "+s.Name, from.Prefix+k, v)
			}
			for k, v := range s.Data {
				set("Secret "+s.Name, from.Prefix+k, string(v))
			}
		}
	}
	for _, e := range c.Env {
		set("env", e.Name, e.Value)
	}
	return env
}

func checkContainerSecurity(c *corev1.Container, where string, fail func(string, ...any)) {
	sc := c.SecurityContext
	if sc == nil {
		fail("%s: no securityContext", where)
		return
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("%s: readOnlyRootFilesystem must be true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("%s: allowPrivilegeEscalation must be false", where)
	}
	dropsAll := false
	if sc.Capabilities != nil {
		for _, capability := range sc.Capabilities.Drop {
			dropsAll = dropsAll || capability == "ALL"
		}
		if len(sc.Capabilities.Add) > 0 {
			fail("%s: adds capabilities %v", where, sc.Capabilities.Add)
		}
	}
	if !dropsAll {
		fail("%s: capabilities must drop ALL", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		fail("%s: privileged", where)
	}
}

func checkResources(c *corev1.Container, where string, fail func(string, ...any)) {
	// The HPA's CPU utilization is relative to the request, and the memory
	// limit feeds GOMEMLIMIT.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			fail("%s: resources.requests.%s is not set", where, r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
		fail("%s: resources.limits.memory is not set", where)
	}
}

func checkProbe(c *corev1.Container, name string, p *corev1.Probe, path string, httpPort *corev1.ContainerPort, where string, fail func(string, ...any)) {
	if p == nil || p.HTTPGet == nil {
		fail("%s: %s must be an httpGet probe of %s", where, name, path)
		return
	}
	if p.HTTPGet.Path != path {
		fail("%s: %s probes %q, want %q", where, name, p.HTTPGet.Path, path)
	}
	if got := findPort([]corev1.Container{*c}, p.HTTPGet.Port); got == nil || httpPort == nil || got.ContainerPort != httpPort.ContainerPort {
		fail("%s: %s port %s is not the http port", where, name, p.HTTPGet.Port.String())
	}
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// findPort resolves a port reference (a name or a number) against the
// containers' declared ports.
func findPort(containers []corev1.Container, ref intstr.IntOrString) *corev1.ContainerPort {
	for i := range containers {
		for j := range containers[i].Ports {
			p := &containers[i].Ports[j]
			if (ref.Type == intstr.String && p.Name == ref.StrVal) || (ref.Type == intstr.Int && p.ContainerPort == ref.IntVal) {
				return p
			}
		}
	}
	return nil
}

// addrPort returns the port of a listen address such as ":8080", or def when
// addr is empty (the binary's default).
func addrPort(addr string, def int32) (int32, bool) {
	if addr == "" {
		return def, def != 0
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}

// loopbackAddr reports whether a listen address such as "127.0.0.1:6060"
// is reachable only from inside the pod.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
