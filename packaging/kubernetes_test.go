package packaging

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/policy"
)

const k8sDir = "kubernetes"

// object is one decoded manifest.
type object struct {
	file string
	kind string
	obj  any
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll strictly decodes every document of a multi-document YAML stream
// into its k8s.io/api type: an unknown or misspelt field fails, as does a
// kind these manifests do not use.
func decodeAll(t *testing.T, name string, b []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Errorf("%s doc %d: %v", name, i, err)
			continue
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		default:
			t.Errorf("%s doc %d: unexpected %s %s", name, i, tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s doc %d (%s): %v", name, i, tm.Kind, err)
			continue
		}
		out = append(out, object{name, tm.Kind, obj})
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// plainManifests are the app-with-sidecar files meant for kubectl apply:
// every YAML file but kustomizations, the overlays' patches and generator
// inputs, and fleet mode's relay.
func plainManifests(t *testing.T) []object {
	t.Helper()
	var out []object
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "overlays" || d.Name() == "relay") {
			return filepath.SkipDir // the relay is no sidecar: relay_test.go
		}
		if d.IsDir() || filepath.Ext(path) != ".yaml" || d.Name() == "kustomization.yaml" {
			return nil
		}
		out = append(out, decodeAll(t, path, mustRead(t, path))...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := plainManifests(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	want := map[string]int{"Deployment": 2, "StatefulSet": 1, "Service": 1, "ConfigMap": 1, "Secret": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s manifests, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	// The harness rejects what it should.
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 1\n  templat: {}\n")
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(bad, &d); err == nil {
		t.Error("a misspelt field decoded without error: the strict decoding does not work")
	}
}

// workloads returns the pod templates (and claim templates) of the Deployments
// and StatefulSets among objs.
func workloads(objs []object) map[string]workload {
	out := map[string]workload{}
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			out[o.file+" "+w.Name] = workload{w.Spec.Template.Spec, nil, o.file}
		case *appsv1.StatefulSet:
			out[o.file+" "+w.Name] = workload{w.Spec.Template.Spec, w.Spec.VolumeClaimTemplates, o.file}
		}
	}
	return out
}

type workload struct {
	pod    corev1.PodSpec
	claims []corev1.PersistentVolumeClaim
	file   string
}

func TestWorkloadInvariants(t *testing.T) {
	ws := workloads(plainManifests(t))
	if len(ws) != 3 {
		t.Fatalf("%d workloads, want 3", len(ws))
	}
	native, classic := 0, 0
	for name, w := range ws {
		t.Run(name, func(t *testing.T) {
			if checkWorkload(t, w) {
				native++
			} else {
				classic++
			}
		})
	}
	if native < 1 || classic < 1 {
		t.Errorf("%d native and %d classic sidecar examples, want both", native, classic)
	}
}

// checkWorkload checks an app pod with the agent as a sidecar and reports
// whether the sidecar is native (an init container with restartPolicy Always).
func checkWorkload(t *testing.T, w workload) (native bool) {
	t.Helper()
	pod := w.pod
	var agent *corev1.Container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == "outpost-agent" {
			agent, native = &pod.InitContainers[i], true
		}
	}
	for i := range pod.Containers {
		if pod.Containers[i].Name == "outpost-agent" {
			if agent != nil {
				t.Fatal("outpost-agent is both an init container and a container")
			}
			agent = &pod.Containers[i]
		}
	}
	if agent == nil {
		t.Fatal("no outpost-agent container")
	}
	if len(pod.Containers) < 1 || (!native && len(pod.Containers) < 2) {
		t.Error("no app container beside the agent")
	}
	if native && (agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		t.Error("the agent init container has no restartPolicy: Always: it would block the app until it exits")
	}

	env := map[string]string{}
	for _, e := range agent.Env {
		if e.ValueFrom != nil {
			t.Errorf("env %s comes from elsewhere: credentials belong in the envFrom Secret", e.Name)
		}
		env[e.Name] = e.Value
	}
	if addr, ok := env["AGENT_LISTEN_ADDR"]; ok {
		if host, _, _ := strings.Cut(addr, ":"); !config.IsLoopback(host) {
			t.Errorf("AGENT_LISTEN_ADDR=%s: the sidecar listens on loopback only", addr)
		}
	}
	if len(agent.Ports) != 0 {
		t.Errorf("the agent declares ports %v: it listens on loopback, nothing outside the pod reaches it", agent.Ports)
	}

	// Probes: exec outpost-probe (the kubelet's httpGet cannot reach 127.0.0.1).
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil {
			t.Errorf("no %s", what)
			return
		}
		if p.Exec == nil || len(p.Exec.Command) != 2 || p.Exec.Command[0] != "/usr/bin/outpost-probe" || p.Exec.Command[1] != path {
			t.Errorf("%s: %+v, want exec [/usr/bin/outpost-probe %s]", what, p.ProbeHandler, path)
		}
		if p.HTTPGet != nil {
			t.Errorf("%s: httpGet goes to the pod IP, the agent listens on 127.0.0.1", what)
		}
	}
	// Started is the store open (the API answers only then), not ready:
	// an agent on a full disk must start and deliver while /readyz is 503.
	probe("startupProbe", agent.StartupProbe, "/healthz")
	probe("readinessProbe", agent.ReadinessProbe, "/readyz")
	probe("livenessProbe", agent.LivenessProbe, "/healthz")
	if s := agent.StartupProbe; s != nil && time.Duration(s.PeriodSeconds*s.FailureThreshold)*time.Second < 60*time.Second {
		t.Errorf("startupProbe allows %ds for the store to open, want at least 60s", s.PeriodSeconds*s.FailureThreshold)
	}

	// Shutdown: the grace period covers the preStop wait and the stop
	// budget (config.StopBudget: the drain within AGENT_SHUTDOWN_TIMEOUT,
	// then the store's close).
	shutdown := 20 * time.Second
	if v, ok := env["AGENT_SHUTDOWN_TIMEOUT"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("AGENT_SHUTDOWN_TIMEOUT=%q: %v", v, err)
		}
		shutdown = d
	}
	var preStop time.Duration
	if l := agent.Lifecycle; l != nil && l.PreStop != nil {
		switch {
		case l.PreStop.Sleep != nil:
			preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		case l.PreStop.Exec != nil:
			c := l.PreStop.Exec.Command
			if len(c) != 3 || c[0] != "/usr/bin/outpost-probe" || c[1] != "sleep" {
				t.Errorf("preStop exec %q: the image has only outpost-agent and outpost-probe", c)
			} else if d, err := time.ParseDuration(c[2]); err == nil {
				preStop = d
			}
		default:
			t.Errorf("preStop %+v: want sleep", l.PreStop)
		}
	}
	if !native && preStop < 5*time.Second {
		t.Errorf("classic sidecar without a preStop wait (%v): it stops accepting while the app still sends", preStop)
	}
	grace := time.Duration(0)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	budget := config.Config{ShutdownTimeout: shutdown}.StopBudget()
	if need := preStop + budget + 5*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + the stop budget %v (AGENT_SHUTDOWN_TIMEOUT %v + %v) + 5s",
			grace, preStop, budget, shutdown, config.StoreCloseTimeout)
	}
	// An emptyDir spool goes with the pod: the comments must say what the
	// drain leaves and where it is kept instead.
	for _, v := range pod.Volumes {
		if !strings.HasSuffix(w.file, ".yaml") {
			break // rendered by kustomize: the comments are in the files
		}
		if v.EmptyDir != nil && v.Name == "spool" && !strings.Contains(string(mustRead(t, w.file)), "actions not forwarded") {
			t.Errorf("%s: an emptyDir spool, and no word of what the drain leaves behind (\"stopped: N actions not forwarded\")", w.file)
		}
	}

	// Security context: the container's own, or the pod's where Kubernetes inherits it.
	sc, psc := agent.SecurityContext, pod.SecurityContext
	if sc == nil {
		t.Fatal("the agent has no securityContext")
	}
	if !(isTrue(sc.RunAsNonRoot) || psc != nil && isTrue(psc.RunAsNonRoot)) {
		t.Error("runAsNonRoot is not set")
	}
	uid := sc.RunAsUser
	if uid == nil && psc != nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid != imageUID {
		t.Errorf("runAsUser %v, want the image's %d", uid, imageUID)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && psc != nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", seccomp)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: the agent does not use the Kubernetes API")
	}

	// Resources (sized from BENCHMARKS.md).
	res := agent.Resources
	for what, want := range map[string]struct {
		got  resource.Quantity
		want string
	}{
		"requests.cpu": {res.Requests[corev1.ResourceCPU], "100m"}, "requests.memory": {res.Requests[corev1.ResourceMemory], "128Mi"},
		"limits.cpu": {res.Limits[corev1.ResourceCPU], "1"}, "limits.memory": {res.Limits[corev1.ResourceMemory], "256Mi"},
	} {
		if want.got.Cmp(resource.MustParse(want.want)) != 0 {
			t.Errorf("resources.%s = %s, want %s", what, want.got.String(), want.want)
		}
	}
	if v, ok := env["AGENT_MEMORY_LIMIT"]; ok {
		n, err := config.ParseByteSize(v)
		if lim := res.Limits[corev1.ResourceMemory]; err != nil || n >= lim.Value() {
			t.Errorf("AGENT_MEMORY_LIMIT=%s must be below the memory limit %s", v, lim.String())
		}
	}

	// Credentials from a Secret.
	if len(agent.EnvFrom) != 1 || agent.EnvFrom[0].SecretRef == nil || agent.EnvFrom[0].SecretRef.Name != "outpost-agent-credentials" {
		t.Errorf("envFrom %+v, want the outpost-agent-credentials Secret", agent.EnvFrom)
	}

	// Volumes: the spool at AGENT_DATA_DIR, the policy read-only at AGENT_POLICY_FILE.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range agent.VolumeMounts {
		mounts[m.Name] = m
		if m.SubPath != "" {
			t.Errorf("volume %s mounted with subPath: updates would never reach the agent", m.Name)
		}
	}
	if m, ok := mounts["spool"]; !ok || m.MountPath != env["AGENT_DATA_DIR"] || m.ReadOnly {
		t.Errorf("spool mount %+v, want read-write at AGENT_DATA_DIR=%q", m, env["AGENT_DATA_DIR"])
	}
	if m, ok := mounts["policy"]; !ok || !m.ReadOnly || !strings.HasPrefix(env["AGENT_POLICY_FILE"], m.MountPath+"/") {
		t.Errorf("policy mount %+v, want read-only holding AGENT_POLICY_FILE=%q", m, env["AGENT_POLICY_FILE"])
	}
	spoolMax := int64(1 << 30)
	if v, ok := env["AGENT_SPOOL_MAX_BYTES"]; ok {
		n, err := config.ParseByteSize(v)
		if err != nil {
			t.Fatalf("AGENT_SPOOL_MAX_BYTES=%q: %v", v, err)
		}
		spoolMax = n
	}
	var size *resource.Quantity
	for _, v := range pod.Volumes {
		switch {
		case v.Name == "spool" && v.EmptyDir != nil:
			if v.EmptyDir.SizeLimit == nil {
				t.Error("the spool emptyDir has no sizeLimit")
			}
			size = v.EmptyDir.SizeLimit
		case v.Name == "policy":
			if v.ConfigMap == nil || v.ConfigMap.Name != "outpost-agent-policy" {
				t.Errorf("policy volume %+v, want the outpost-agent-policy ConfigMap", v.VolumeSource)
			}
		}
	}
	for _, c := range w.claims {
		if c.Name == "spool" {
			q := c.Spec.Resources.Requests[corev1.ResourceStorage]
			size = &q
		}
	}
	if size == nil {
		t.Fatal("no spool volume (emptyDir or volumeClaimTemplate)")
	}
	// Room for badger's value-log garbage collection above the cap.
	if float64(size.Value()) < 1.5*float64(spoolMax) {
		t.Errorf("spool volume %s is less than 1.5 x AGENT_SPOOL_MAX_BYTES (%d)", size.String(), spoolMax)
	}
	return native
}

func isTrue(b *bool) bool { return b != nil && *b }

func TestPolicyConfigMapParses(t *testing.T) {
	for _, o := range plainManifests(t) {
		cm, ok := o.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		src, ok := cm.Data["policy.yaml"]
		if !ok {
			t.Fatalf("%s: no policy.yaml key", o.file)
		}
		if _, err := policy.Parse([]byte(src), o.file+":policy.yaml"); err != nil {
			t.Errorf("%s: the agent would refuse this policy:\n%v", o.file, err)
		}
	}
}

func TestSecretShipsNoValues(t *testing.T) {
	for _, o := range plainManifests(t) {
		if s, ok := o.obj.(*corev1.Secret); ok && (len(s.Data) > 0 || len(s.StringData) > 0) {
			t.Errorf("%s: the example Secret carries values", o.file)
		}
	}
	for _, line := range strings.Split(string(mustRead(t, filepath.Join(k8sDir, "overlays/example/credentials.env"))), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("credentials.env sets %q: it must hold commented placeholders only", l)
		}
	}
}

// kustomization is the part of kustomization.yaml whose file references we check.
type kustomization struct {
	Resources []string `json:"resources"`
	Patches   []struct {
		Path string `json:"path"`
	} `json:"patches"`
	SecretGenerator []struct {
		Envs  []string `json:"envs"`
		Files []string `json:"files"`
	} `json:"secretGenerator"`
	ConfigMapGenerator []struct {
		Envs  []string `json:"envs"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
}

func TestKustomizationReferencesExist(t *testing.T) {
	for _, dir := range []string{"base", "overlays/example"} {
		dir = filepath.Join(k8sDir, dir)
		var k kustomization
		if err := yaml.Unmarshal(mustRead(t, filepath.Join(dir, "kustomization.yaml")), &k); err != nil {
			t.Fatal(err)
		}
		refs := append([]string{}, k.Resources...)
		for _, p := range k.Patches {
			refs = append(refs, p.Path)
		}
		for _, g := range k.SecretGenerator {
			refs = append(append(refs, g.Envs...), g.Files...)
		}
		for _, g := range k.ConfigMapGenerator {
			refs = append(append(refs, g.Envs...), g.Files...)
		}
		if len(refs) == 0 {
			t.Errorf("%s references nothing", dir)
		}
		for _, r := range refs {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s/kustomization.yaml: %s: %v", dir, r, err)
			}
		}
	}
}

// kustomize builds a kustomization with the kustomize library (what
// `kubectl kustomize` runs) and decodes the result strictly.
func kustomize(t *testing.T, dir string) []object {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(k8sDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "kustomize build "+dir, out)
}

func TestKustomizeBase(t *testing.T) {
	objs := kustomize(t, "base")
	if len(objs) != 3 {
		t.Fatalf("base renders %d objects, want 3 (ConfigMap, Secret, Deployment)", len(objs))
	}
	for name, w := range workloads(objs) {
		t.Run(name, func(t *testing.T) {
			if !checkWorkload(t, w) {
				t.Error("the base is not the native sidecar form")
			}
		})
	}
	// The base renders exactly the plain manifests it lists.
	var plain []byte
	for _, f := range []string{"policy-configmap.yaml", "credentials-secret.yaml", "deployment.yaml"} {
		plain = append(append(plain, mustRead(t, filepath.Join(k8sDir, "base", f))...), "\n---\n"...)
	}
	if got, want := len(objs), len(decodeAll(t, "base files", plain)); got != want {
		t.Errorf("base renders %d objects, its files hold %d", got, want)
	}
}

func TestKustomizeExampleOverlay(t *testing.T) {
	objs := kustomize(t, "overlays/example")
	var secretName string
	for _, o := range objs {
		meta := o.obj.(metav1.ObjectMetaAccessor).GetObjectMeta()
		if meta.GetNamespace() != "payments" {
			t.Errorf("%s %s in namespace %q, want payments", o.kind, meta.GetName(), meta.GetNamespace())
		}
		if meta.GetLabels()["app.kubernetes.io/part-of"] != "outpost" {
			t.Errorf("%s %s lacks the base's part-of label", o.kind, meta.GetName())
		}
		if s, ok := o.obj.(*corev1.Secret); ok {
			secretName = s.Name
			if len(s.Data)+len(s.StringData) != 0 {
				t.Errorf("the example overlay's Secret carries values: %v", s.Data)
			}
		}
	}
	// behavior: replace keeps the base's name (no hash suffix).
	if !strings.HasPrefix(secretName, "outpost-agent-credentials") {
		t.Errorf("generated Secret %q, want outpost-agent-credentials", secretName)
	}
	ws := workloads(objs)
	if len(ws) != 1 {
		t.Fatalf("%d workloads, want 1", len(ws))
	}
	for _, w := range ws {
		// The generated Secret's name is what the pod refers to.
		var agent corev1.Container
		for _, c := range w.pod.InitContainers {
			if c.Name == "outpost-agent" {
				agent = c
			}
		}
		if len(agent.EnvFrom) != 1 || agent.EnvFrom[0].SecretRef == nil || agent.EnvFrom[0].SecretRef.Name != secretName {
			t.Errorf("envFrom %+v does not name the generated Secret %q", agent.EnvFrom, secretName)
		}
		if agent.Image != "registry.bank.example/outpost/agent:1.2.3" {
			t.Errorf("agent image %q: the overlay's images: did not apply", agent.Image)
		}
		// The invariants hold with the patched sizes; check them on a copy
		// whose Secret name is the base's, as checkWorkload expects.
		for i := range w.pod.InitContainers {
			if w.pod.InitContainers[i].Name == "outpost-agent" {
				w.pod.InitContainers[i].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "outpost-agent-credentials"}}}}
			}
		}
		checkWorkload(t, w)
		for _, v := range w.pod.Volumes {
			if v.Name == "spool" && (v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.String() != "8Gi") {
				t.Errorf("spool volume %+v: the overlay's patch did not apply", v.VolumeSource)
			}
		}
	}
}

// TestManifestsMentionBenchmarks: the resource figures are to be replaced by measured ones.
func TestManifestsMentionBenchmarks(t *testing.T) {
	for _, f := range []string{"base/deployment.yaml", "examples/deployment-classic-sidecar.yaml", "examples/statefulset.yaml"} {
		if !bytes.Contains(mustRead(t, filepath.Join(k8sDir, f)), []byte("Sized from BENCHMARKS.md")) {
			t.Errorf("%s: the resources comment should say where the figures come from", f)
		}
	}
}
