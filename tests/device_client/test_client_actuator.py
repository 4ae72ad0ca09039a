"""Actuators: the logging one, and the GPIO one with a stand-in for gpiozero."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
from thingledger_device.actuator import GpioActuator, LoggingActuator, ReleaseEvent, make_actuator
from thingledger_device.errors import DeviceClientError

EVENT = ReleaseEvent(order_id=7, gate_id=1234, buyer="0x90F79bf6EB2c4f870365E785982E1f101E93b906", tx_hash="0xabc")


def test_logging_actuator_appends_one_json_line_per_release(tmp_path: Path) -> None:
    echo = io.StringIO()
    actuator = LoggingActuator(tmp_path / "state" / "actuator.log", echo=echo)
    actuator.release(EVENT)
    actuator.release(ReleaseEvent(8, 1234, EVENT.buyer, "0xdef"))
    lines = [json.loads(line) for line in (tmp_path / "state" / "actuator.log").read_text().splitlines()]
    assert [line["order_id"] for line in lines] == [7, 8]
    assert lines[0]["action"] == "release" and lines[0]["tx_hash"] == "0xabc" and lines[0]["gate_id"] == 1234
    assert echo.getvalue().splitlines() == [
        f"actuator: released order 7 to {EVENT.buyer}",
        f"actuator: released order 8 to {EVENT.buyer}",
    ]


def test_logging_actuator_reports_an_unwritable_log(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeviceClientError, match="actuator log"):
        LoggingActuator(blocker / "actuator.log").release(EVENT)


class FakeOutputDevice:
    """Records what the actuator does with the pin."""

    calls: ClassVar[list[tuple[str, object]]] = []
    fail_on: bool = False

    def __init__(self, pin: int, active_high: bool, initial_value: bool) -> None:
        self.calls.append(("init", (pin, active_high, initial_value)))

    def on(self) -> None:
        self.calls.append(("on", None))
        if self.fail_on:
            raise RuntimeError("pin exploded")

    def off(self) -> None:
        self.calls.append(("off", None))

    def close(self) -> None:
        self.calls.append(("close", None))


@pytest.fixture
def fake_gpiozero(monkeypatch: pytest.MonkeyPatch) -> type[FakeOutputDevice]:
    FakeOutputDevice.calls = []
    FakeOutputDevice.fail_on = False
    module = types.ModuleType("gpiozero")
    module.OutputDevice = FakeOutputDevice  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiozero", module)
    monkeypatch.setattr(
        "thingledger_device.actuator.time.sleep", lambda seconds: FakeOutputDevice.calls.append(("sleep", seconds))
    )
    return FakeOutputDevice


def test_gpio_actuator_pulses_the_pin(fake_gpiozero: type[FakeOutputDevice]) -> None:
    GpioActuator(pin=22, pulse_seconds=1.5).release(EVENT)
    assert fake_gpiozero.calls == [
        ("init", (22, True, False)),
        ("on", None),
        ("sleep", 1.5),
        ("off", None),
        ("close", None),
    ]


def test_gpio_failure_is_a_client_error_and_the_pin_is_switched_off(fake_gpiozero: type[FakeOutputDevice]) -> None:
    fake_gpiozero.fail_on = True
    with pytest.raises(DeviceClientError, match="GPIO17 failed while releasing: pin exploded"):
        GpioActuator().release(EVENT)
    assert fake_gpiozero.calls[-2:] == [("off", None), ("close", None)]


def test_gpio_actuator_without_gpiozero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # makes `import gpiozero` fail
    with pytest.raises(DeviceClientError, match=r"needs gpiozero: pip install 'thingledger-device\[gpio\]'"):
        GpioActuator().release(EVENT)


@pytest.mark.parametrize(("pin", "pulse"), [(28, 1.0), (-1, 1.0), (17, 0.0), (17, 61.0)])
def test_gpio_actuator_checks_its_settings(pin: int, pulse: float) -> None:
    with pytest.raises(DeviceClientError):
        GpioActuator(pin, pulse)


def test_make_actuator(tmp_path: Path) -> None:
    logging = make_actuator("log", state_dir=tmp_path, gpio_pin=17, pulse_seconds=2.0)
    assert isinstance(logging, LoggingActuator) and logging.log_path == tmp_path / "actuator.log"
    gpio = make_actuator("gpio", state_dir=tmp_path, gpio_pin=5, pulse_seconds=0.5)
    assert isinstance(gpio, GpioActuator) and gpio.pin == 5 and gpio.pulse_seconds == 0.5
    with pytest.raises(DeviceClientError, match="unknown actuator"):
        make_actuator("servo", state_dir=tmp_path, gpio_pin=17, pulse_seconds=2.0)
