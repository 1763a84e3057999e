package flick

import "encoding/json"

// MachineConfig is the part of Fly's MachineConfig that flick reads, with Fly's JSON names.
// Zero values are left out, so the library's defaults apply. For fields not here, pass raw
// JSON as MachineCreate.RawConfig.
type MachineConfig struct {
	Image       string            `json:"image"`
	Env         map[string]string `json:"env,omitempty"`
	Guest       *Guest            `json:"guest,omitempty"`
	Init        *Init             `json:"init,omitempty"`
	Restart     *Restart          `json:"restart,omitempty"`
	StopConfig  *StopConfig       `json:"stop_config,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Services    []Service         `json:"services,omitempty"`
	AutoDestroy bool              `json:"auto_destroy,omitempty"`
	// A Go duration string ("30s"); empty: the library's default.
	StartTimeout string `json:"start_timeout,omitempty"`
	// "always" or "never"; empty: pull what the cache lacks.
	Pull string `json:"pull,omitempty"`
}

// Guest is the VM's size (Fly's guest).
type Guest struct {
	CPUs          int      `json:"cpus,omitempty"`
	MemoryMB      int      `json:"memory_mb,omitempty"`
	CPUKind       string   `json:"cpu_kind,omitempty"` // "shared" or "performance"
	KernelArgs    []string `json:"kernel_args,omitempty"`
	Kernel        string   `json:"kernel,omitempty"`
	KernelModules string   `json:"kernel_modules,omitempty"`
	// RootfsSizeMB is the root filesystem's size; 0: the image's content plus 256 MiB.
	RootfsSizeMB int `json:"rootfs_size_mb,omitempty"`
}

// Init overrides the image's program (Fly's init).
type Init struct {
	Exec       []string `json:"exec,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	TTY        bool     `json:"tty,omitempty"`
	KernelArgs []string `json:"kernel_args,omitempty"`
	User       string   `json:"user,omitempty"`
	Workdir    string   `json:"workdir,omitempty"`
}

// Restart is Fly's restart policy: "no", "always" or "on-failure".
type Restart struct {
	Policy     string `json:"policy,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// StopConfig says how a machine is asked to stop.
type StopConfig struct {
	Signal  string `json:"signal,omitempty"`  // "SIGTERM", ...
	Timeout string `json:"timeout,omitempty"` // "10s"
}

// Mount attaches a volume (by id or name) at a path.
type Mount struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// Service is one of Fly's services: the guest's InternalPort published on the host's Ports.
// flick checks it; the proxy that will use it is not built yet. For Fly's service fields not
// here (checks, http_options, ...), pass raw JSON as MachineCreate.RawConfig.
type Service struct {
	Protocol           string       `json:"protocol,omitempty"` // "tcp" (the default)
	InternalPort       int          `json:"internal_port"`
	Ports              []Port       `json:"ports,omitempty"`
	Autostart          bool         `json:"autostart,omitempty"`
	Autostop           Autostop     `json:"autostop,omitempty"`
	MinMachinesRunning int          `json:"min_machines_running,omitempty"`
	Concurrency        *Concurrency `json:"concurrency,omitempty"`
	// AutostopIdle (flick's extension) is a Go duration ("5m", the default): how long without
	// connections makes a machine idle.
	AutostopIdle string `json:"autostop_idle,omitempty"`
}

// Port is a port a service publishes on the host (Fly's MachinePort). Handlers are kept, not
// acted on.
type Port struct {
	Port     int      `json:"port"`
	Handlers []string `json:"handlers,omitempty"`
}

// Concurrency is a service's connection limits (Fly's concurrency); 0: no limit.
type Concurrency struct {
	Type      string `json:"type,omitempty"` // "connections"
	SoftLimit int    `json:"soft_limit,omitempty"`
	HardLimit int    `json:"hard_limit,omitempty"`
}

// Autostop is what is done to a service's idle machine: "off" (or empty), "stop" or "suspend".
type Autostop string

const (
	AutostopOff     Autostop = "off"
	AutostopStop    Autostop = "stop"
	AutostopSuspend Autostop = "suspend"
)

// UnmarshalJSON also reads Fly's older booleans: false is "off", true "stop".
func (a *Autostop) UnmarshalJSON(b []byte) error {
	var on bool
	if string(b) == "null" {
		return nil
	}
	if err := json.Unmarshal(b, &on); err == nil {
		*a = AutostopOff
		if on {
			*a = AutostopStop
		}
		return nil
	}
	return json.Unmarshal(b, (*string)(a))
}

// ImageRef says which image a machine runs.
type ImageRef struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// MachineInfo is Fly's Machine object, as flickd's GET /machines/{id} answers it. Config is
// kept as the raw document (Fly's MachineConfig, defaults filled in): decode it with
// DecodeConfig, or into a type of your own.
type MachineInfo struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	State      string          `json:"state"`
	Region     string          `json:"region"`
	App        string          `json:"app"`
	InstanceID string          `json:"instance_id"`
	Version    uint64          `json:"version"`
	PrivateIP  string          `json:"private_ip,omitempty"`
	Config     json.RawMessage `json:"config"`
	ImageRef   ImageRef        `json:"image_ref"`
	CreatedAt  string          `json:"created_at"`
	UpdatedAt  string          `json:"updated_at"`
	Cordoned   bool            `json:"cordoned"`
	Events     []Event         `json:"events,omitempty"`
}

// DecodeConfig decodes Config into a MachineConfig (fields it lacks are dropped).
func (m *MachineInfo) DecodeConfig() (*MachineConfig, error) {
	var c MachineConfig
	return &c, decode(string(m.Config), &c)
}

// Event is one of Fly's machine events ("launch", "start", "exit", "destroy", ...).
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Status    string          `json:"status"`
	Source    string          `json:"source"`
	Timestamp int64           `json:"timestamp"` // Unix milliseconds
	Request   json.RawMessage `json:"request,omitempty"`
}

// Lease is Fly's machine lease.
type Lease struct {
	Nonce       string `json:"nonce"`
	ExpiresAt   int64  `json:"expires_at"` // Unix seconds
	Owner       string `json:"owner"`
	Description string `json:"description"`
	Version     string `json:"version"`
}

// App is Fly's App object; "default" always exists.
type App struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Organization struct {
		Slug string `json:"slug"`
	} `json:"organization"`
	MachineCount int    `json:"machine_count"`
	VolumeCount  int    `json:"volume_count"`
	CreatedAt    string `json:"created_at"`
}

// Volume is Fly's Volume object: an ext4 file system that outlives machines.
type Volume struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	State             string  `json:"state"`
	SizeGB            uint64  `json:"size_gb"`
	AttachedMachineID *string `json:"attached_machine_id"`
	App               string  `json:"app"`
	Path              string  `json:"path"`
}
