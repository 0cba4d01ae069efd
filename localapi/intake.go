package localapi

import (
	"fmt"

	"github.com/outpost-agent/outpost/spool"
)

// intakeStatus is /v1/status's account of whether new work is taken.
type intakeStatus struct {
	// State is "accepting" or "refusing".
	State string `json:"state"`
	// Reason while refusing: "disk_low" or "spool_full".
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// FreeDiskBytes: -1 when the disk is not watched (no minimum).
	FreeDiskBytes    int64 `json:"free_disk_bytes"`
	MinFreeDiskBytes int64 `json:"min_free_disk_bytes"`
}

func newIntakeStatus(in spool.Intake) intakeStatus {
	st := intakeStatus{State: "accepting", FreeDiskBytes: in.FreeBytes, MinFreeDiskBytes: in.MinFreeBytes}
	if in.Refusing {
		st.State, st.Reason, st.Message = "refusing", in.Reason, intakeMessage(in)
	}
	return st
}

// intakeMessage says why new work is refused, and what still happens.
func intakeMessage(in spool.Intake) string {
	switch in.Reason {
	case "disk_low":
		return fmt.Sprintf("new actions and decisions get 503 spool_full: the data disk has %s free, under AGENT_MIN_FREE_DISK (%s); "+
			"queued items are still delivered, and intake resumes by itself once space is freed", mib(in.FreeBytes), mib(in.MinFreeBytes))
	case "spool_full":
		return fmt.Sprintf("new actions get 503 spool_full: the spool holds %s of AGENT_SPOOL_MAX_BYTES (%s); "+
			"intake resumes as deliveries make room", mib(in.StoredBytes), mib(in.MaxBytes))
	}
	return "new work is refused: " + in.Reason
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
