package packaging

import (
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestRelayDeployment: the fleet relay's Deployment decodes strictly, runs
// `relay` as the image's user with the agent's hardening, probes with
// outpost-probe, takes its settings from its own Secret, and gives the
// drain its time.
func TestRelayDeployment(t *testing.T) {
	path := filepath.Join(k8sDir, "relay", "deployment.yaml")
	objs := decodeAll(t, path, mustRead(t, path))
	if len(objs) != 1 {
		t.Fatalf("%d objects, want the Deployment", len(objs))
	}
	d, ok := objs[0].obj.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("%s is a %s", path, objs[0].kind)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("fewer than 2 relays: a relay's death would stop delivery until it restarts")
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "outpost-relay" {
		t.Fatalf("containers %+v", pod.Containers)
	}
	c := pod.Containers[0]
	if len(c.Args) != 1 || c.Args[0] != "relay" {
		t.Errorf("args %q, want [relay]", c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["AGENT_DATA_DIR"] == "" || len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != env["AGENT_DATA_DIR"] {
		t.Errorf("data dir %q mounted %+v", env["AGENT_DATA_DIR"], c.VolumeMounts)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "outpost-relay-credentials" {
		t.Errorf("envFrom %+v", c.EnvFrom)
	}
	for what, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.Exec == nil || p.Exec.Command[0] != "/usr/bin/outpost-probe" {
			t.Errorf("%s probe %+v", what, p)
		}
	}
	sd, _ := time.ParseDuration(env["AGENT_SHUTDOWN_TIMEOUT"])
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second < 3*sd+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, AGENT_SHUTDOWN_TIMEOUT %v", pod.TerminationGracePeriodSeconds, sd)
	}
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil || psc == nil || !isTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser != imageUID ||
		!isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context %+v / pod %+v", sc, psc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false")
	}
	if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("memory limit %s", lim.String())
	}
}
