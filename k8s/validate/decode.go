// Package validate renders api-perf's kustomizations and decodes every object
// strictly into its Kubernetes Go type, so that a misspelled or misplaced
// field fails here instead of being silently dropped by kubectl or the API
// server. It also checks invariants between the objects (probe paths, the
// shutdown budget, selectors) that no schema expresses.
//
// It is its own Go module so that the Kubernetes API packages never enter the
// server's dependency graph.
package validate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// Object is one decoded manifest: its kind and name, for messages, and the
// typed value (for example *appsv1.Deployment).
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Value      any
}

// kinds lists every apiVersion/kind the manifests may contain. A kind that is
// missing here fails decoding, so a new kind cannot slip in unchecked.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return new(monitoringv1.ServiceMonitor)
	},
	"monitoring.coreos.com/v1/PrometheusRule": func() any {
		return new(monitoringv1.PrometheusRule)
	},
}

// Render returns the output of `kubectl kustomize dir`, or of `kustomize
// build dir` when kubectl is absent. The KUBECTL variable names another
// kubectl binary.
func Render(dir string) ([]byte, error) {
	var cmd *exec.Cmd
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	if path, err := exec.LookPath(kubectl); err == nil {
		cmd = exec.Command(path, "kustomize", dir)
	} else if path, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command(path, "build", dir)
	} else {
		return nil, errors.New("cannot render: neither kubectl nor kustomize is in PATH")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cannot render %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// DecodeStrict splits a multi-document YAML stream and decodes each document
// into its registered type. It fails on unknown fields, fields whose case
// differs from the schema's, duplicate keys, wrong value types and
// unregistered kinds, naming the document that failed.
func DecodeStrict(data []byte) ([]Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []Object
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: cannot read: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, err := decodeOne(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if obj.Kind == "" {
			continue // a document holding only comments
		}
		objs = append(objs, obj)
	}
}

func decodeOne(doc []byte) (Object, error) {
	// YAMLToJSONStrict rejects duplicate keys, which a plain conversion would
	// resolve silently to the last value.
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return Object{}, nil
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return Object{}, fmt.Errorf("cannot read apiVersion and kind: %w", err)
	}
	ref := head.Kind + " " + head.Metadata.Name
	newValue, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return Object{}, fmt.Errorf("%s: unregistered kind %s/%s (add it to validate.kinds)", ref, head.APIVersion, head.Kind)
	}
	value := newValue()
	// sigs.k8s.io/json is the decoder the API server uses: case-sensitive
	// field names, and strict errors reported separately from syntax errors.
	strictErrs, err := sigsjson.UnmarshalStrict(js, value)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", ref, err)
	}
	if len(strictErrs) > 0 {
		return Object{}, fmt.Errorf("%s: %w", ref, errors.Join(strictErrs...))
	}
	return Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, Value: value}, nil
}
