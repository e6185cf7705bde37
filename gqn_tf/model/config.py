"""Model configuration (docs/design.md §2) and the named presets `paper`, `small` and `tiny`."""

import dataclasses

REPRESENTATIONS = ("tower", "pool", "pyramid")


@dataclasses.dataclass(frozen=True)
class GQNConfig:
    """Everything that shapes a GQN. The defaults are the paper's (Figs. S1-S2, Table S1).

    image_size: side of the square frames, a multiple of 4 (64 for most datasets, 84 for mazes,
      128 for rooms_free_camera_with_object_rotations); the cores run at image_size / 4.
    representation: "tower", "pool" or "pyramid" (Fig. S1).
    r_channels: channels of the scene representation r.
    hidden_channels: ConvLSTM hidden channels of C^g and C^e.
    z_channels: channels of each latent z_l.
    canvas_channels: channels of the canvas u.
    num_layers: L, the generative steps.
    kernel_size: ConvLSTM kernel size.
    shared_cores: one C^g and one C^e for all L steps instead of one per step.
    """

    image_size: int = 64
    representation: str = "pool"
    r_channels: int = 256
    hidden_channels: int = 128
    z_channels: int = 3
    canvas_channels: int = 128
    num_layers: int = 12
    kernel_size: int = 5
    shared_cores: bool = False

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"Unknown representation {self.representation!r}: use one of {REPRESENTATIONS}."
            )
        if self.image_size % 4 or self.image_size < 8:
            raise ValueError(
                f"image_size must be a multiple of 4 and at least 8 (the cores and the canvas "
                f"work at image_size / 4; the pyramid's last convolution spans image_size // 8), "
                f"got {self.image_size}. Resize the frames with --frame_size."
            )
        for name in ("r_channels", "hidden_channels", "z_channels", "canvas_channels",
                     "num_layers", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @property
    def core_size(self):
        """Side of the cores' feature maps (16 for 64x64 images)."""
        return self.image_size // 4

    def to_dict(self):
        return dataclasses.asdict(self)

    def replace(self, **overrides):
        return dataclasses.replace(self, **overrides)


PRESETS = {
    # The paper-faithful configuration.
    "paper": GQNConfig(),
    # Trains on a laptop CPU in minutes: the quick start and the README's synthetic run.
    "small": GQNConfig(representation="tower", r_channels=64, hidden_channels=32, z_channels=3,
                       canvas_channels=32, num_layers=4, shared_cores=False),
    # For tests: a forward and backward pass in well under a second on CPU.
    "tiny": GQNConfig(representation="tower", r_channels=16, hidden_channels=8, z_channels=2,
                      canvas_channels=8, num_layers=2, kernel_size=3),
}


def get_preset(name, **overrides):
    """The preset `name` with the given fields replaced; unknown names raise a clear error."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: use one of {', '.join(PRESETS)}.")
    fields = {f.name for f in dataclasses.fields(GQNConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown model config field(s) {unknown}: known are {sorted(fields)}.")
    return PRESETS[name].replace(**overrides)
