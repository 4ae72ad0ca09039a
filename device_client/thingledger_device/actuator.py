"""What the gate does once a release is confirmed on chain: open the locker (GPIO) or log the release."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import DeviceClientError

ACTUATOR_LOG = "actuator.log"
DEFAULT_GPIO_PIN = 17
DEFAULT_PULSE_SECONDS = 2.0


@dataclass(frozen=True)
class ReleaseEvent:
    """A release confirmed on chain, which the actuator carries out."""

    order_id: int
    gate_id: int
    buyer: str
    tx_hash: str


class Actuator(Protocol):
    """Hands an item over: called exactly once per confirmed release."""

    def release(self, event: ReleaseEvent) -> None: ...


class LoggingActuator:
    """Appends one JSON line per release to a log file (default <state-dir>/actuator.log) and, if given,
    writes a line for people to `echo` (a demo gate with no hardware)."""

    def __init__(self, log_path: str | Path, echo: IO[str] | None = None) -> None:
        self.log_path = Path(log_path).expanduser()
        self.echo = echo

    def release(self, event: ReleaseEvent) -> None:
        record: dict[str, Any] = {"time": int(time.time()), "action": "release", **asdict(event)}
        try:
            self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")
        except OSError as error:
            raise DeviceClientError(f"actuator log {self.log_path}: {error.strerror or error}") from None
        if self.echo is not None:
            print(f"actuator: released order {event.order_id} to {event.buyer}", file=self.echo)


class GpioActuator:
    """Pulses a GPIO output (BCM numbering) high for `pulse_seconds`: a relay that opens a solenoid lock.

    gpiozero is imported only when the actuator is used, so the client runs on machines without it.
    """

    def __init__(self, pin: int = DEFAULT_GPIO_PIN, pulse_seconds: float = DEFAULT_PULSE_SECONDS) -> None:
        if not 0 <= pin <= 27:
            raise DeviceClientError(f"GPIO pin must be a BCM number from 0 to 27, got {pin}")
        if not 0 < pulse_seconds <= 60:
            raise DeviceClientError(f"GPIO pulse must last between 0 and 60 seconds, got {pulse_seconds}")
        self.pin = pin
        self.pulse_seconds = pulse_seconds

    def release(self, event: ReleaseEvent) -> None:
        try:
            from gpiozero import OutputDevice  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise DeviceClientError(
                "the gpio actuator needs gpiozero: pip install 'thingledger-device[gpio]'"
            ) from None
        try:
            output = OutputDevice(self.pin, active_high=True, initial_value=False)
        except Exception as error:  # gpiozero raises its own hierarchy (no pin factory, pin in use, ...)
            raise DeviceClientError(f"cannot drive GPIO{self.pin}: {error}") from None
        try:
            output.on()
            time.sleep(self.pulse_seconds)
        except Exception as error:  # a pin failure must still be reported in one line
            raise DeviceClientError(f"GPIO{self.pin} failed while releasing: {error}") from None
        finally:
            output.off()
            output.close()


def make_actuator(
    kind: str, *, state_dir: str | Path, gpio_pin: int, pulse_seconds: float, echo: IO[str] | None = None
) -> Actuator:
    """The actuator named on the command line: "log" or "gpio"."""
    if kind == "log":
        return LoggingActuator(Path(state_dir).expanduser() / ACTUATOR_LOG, echo=echo)
    if kind == "gpio":
        return GpioActuator(gpio_pin, pulse_seconds)
    raise DeviceClientError(f"unknown actuator {kind!r} (expected log or gpio)")
