//! Machine physics: what a simulated factory machine measures.
//!
//! A [`Machine`] is pure: time comes in as an argument (a `Duration` since
//! any fixed origin) and randomness from its own generator, seeded by the
//! caller, so a run with the same seed and the same clock gives the same
//! readings. It knows nothing of MQTT or JSON documents other than the
//! telemetry object it renders.
//!
//! The model, integrated in steps of at most one second:
//! - rpm ramps towards the target speed at a fixed rate (the target is
//!   0 unless the mode is "run");
//! - temperature relaxes towards an equilibrium (a setpoint that drifts
//!   slowly, plus a rise proportional to the load), with a little noise;
//! - vibration and power draw follow the rpm, with noise;
//! - with a fault rate above zero a running machine occasionally overheats:
//!   for a few minutes the equilibrium is far above 90 °C, then the machine
//!   recovers on its own.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Integration step at most, in seconds.
const STEP_S: f64 = 1.0;
/// A gap longer than this is not integrated step by step: the machine
/// simply continues from this long before `now`.
const MAX_CATCH_UP_S: f64 = 3600.0;
/// Time constant of the temperature in normal operation, in seconds.
const TEMP_TAU_S: f64 = 90.0;
/// Time constant while overheating (it heats fast).
const FAULT_TAU_S: f64 = 40.0;
/// Equilibrium temperature while overheating, before the load share.
const FAULT_TEMP: f64 = 98.0;
/// How long an overheating fault lasts, in seconds.
const FAULT_MIN_S: f64 = 180.0;
const FAULT_MAX_S: f64 = 360.0;
/// Bound of the slow drift of the temperature setpoint, in °C.
const MAX_DRIFT: f64 = 3.0;
/// The largest speed a machine accepts, in rpm.
pub const MAX_SPEED: f64 = 10_000.0;

/// The kinds of machine in a simulated factory; each has its own nominal
/// speed, temperatures, vibration and power draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineKind {
    Press,
    Lathe,
    Pump,
    Compressor,
}

/// The figures that make one kind of machine differ from another.
#[derive(Debug, Clone, Copy)]
struct Profile {
    /// The default target speed.
    nominal_rpm: f64,
    /// How fast the speed ramps, in rpm per second.
    ramp_rpm_per_s: f64,
    /// Temperature setpoint at standstill, in °C.
    setpoint: f64,
    /// Temperature rise at nominal speed, in °C.
    rise_at_nominal: f64,
    /// Vibration at nominal speed, in mm/s.
    vibration_at_nominal: f64,
    /// Power draw at standstill and at nominal speed, in kW.
    idle_kw: f64,
    nominal_kw: f64,
}

impl MachineKind {
    /// Every kind, in the order fleets cycle through them.
    pub const ALL: [MachineKind; 4] = [
        MachineKind::Press,
        MachineKind::Lathe,
        MachineKind::Pump,
        MachineKind::Compressor,
    ];

    /// The kind of the `index`-th machine of a fleet.
    pub fn for_index(index: usize) -> MachineKind {
        MachineKind::ALL[index % MachineKind::ALL.len()]
    }

    /// The device type as registered (`press`, `lathe`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::Press => "press",
            MachineKind::Lathe => "lathe",
            MachineKind::Pump => "pump",
            MachineKind::Compressor => "compressor",
        }
    }

    /// A human name for the kind (`Press`, ...).
    pub fn title(self) -> &'static str {
        match self {
            MachineKind::Press => "Press",
            MachineKind::Lathe => "Lathe",
            MachineKind::Pump => "Pump",
            MachineKind::Compressor => "Compressor",
        }
    }

    /// Parses a device type; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<MachineKind> {
        MachineKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The speed a machine of this kind runs at until told otherwise.
    pub fn nominal_rpm(self) -> f64 {
        self.profile().nominal_rpm
    }

    fn profile(self) -> Profile {
        match self {
            MachineKind::Press => Profile {
                nominal_rpm: 1200.0,
                ramp_rpm_per_s: 150.0,
                setpoint: 45.0,
                rise_at_nominal: 15.0,
                vibration_at_nominal: 2.3,
                idle_kw: 0.8,
                nominal_kw: 7.5,
            },
            MachineKind::Lathe => Profile {
                nominal_rpm: 1800.0,
                ramp_rpm_per_s: 300.0,
                setpoint: 40.0,
                rise_at_nominal: 18.0,
                vibration_at_nominal: 1.6,
                idle_kw: 0.5,
                nominal_kw: 5.5,
            },
            MachineKind::Pump => Profile {
                nominal_rpm: 1480.0,
                ramp_rpm_per_s: 200.0,
                setpoint: 35.0,
                rise_at_nominal: 20.0,
                vibration_at_nominal: 3.1,
                idle_kw: 0.4,
                nominal_kw: 11.0,
            },
            MachineKind::Compressor => Profile {
                nominal_rpm: 2950.0,
                ramp_rpm_per_s: 250.0,
                setpoint: 50.0,
                rise_at_nominal: 20.0,
                vibration_at_nominal: 4.0,
                idle_kw: 1.5,
                nominal_kw: 22.0,
            },
        }
    }
}

impl fmt::Display for MachineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the machine is doing: only "run" turns the spindle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Idle,
    Maintenance,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Idle => "idle",
            Mode::Maintenance => "maintenance",
        }
    }

    /// Parses `run`, `idle` or `maintenance`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "run" => Some(Mode::Run),
            "idle" => Some(Mode::Idle),
            "maintenance" => Some(Mode::Maintenance),
            _ => None,
        }
    }
}

/// One set of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// °C.
    pub temp: f64,
    /// mm/s.
    pub vibration: f64,
    pub rpm: f64,
    /// kW.
    pub power: f64,
}

impl Reading {
    /// The telemetry object of the device contract, rounded the way a
    /// sensor reports: `{"temp": 61.2, "vibration": 2.31, "rpm": 1480,
    /// "power": 7.9}`.
    pub fn to_json(&self) -> Value {
        json!({
            "temp": round(self.temp, 1),
            "vibration": round(self.vibration, 2),
            "rpm": self.rpm.round().max(0.0) as u64,
            "power": round(self.power, 1),
        })
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// A simulated machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Machine {
    kind: MachineKind,
    profile: Profile,
    rng: StdRng,
    /// Probability of a fault starting, per second of running.
    fault_rate_per_s: f64,
    /// Seconds since the origin the state describes.
    now_s: f64,
    target_rpm: f64,
    mode: Mode,
    rpm: f64,
    temp: f64,
    drift: f64,
    /// While overheating: the time (seconds) the fault ends.
    fault_until_s: Option<f64>,
    faults: u64,
}

impl Machine {
    /// A machine at its nominal speed and temperature at time `now`. The
    /// fault rate is in faults per hour of running.
    pub fn new(kind: MachineKind, seed: u64, fault_rate_per_hour: f64, now: Duration) -> Machine {
        let profile = kind.profile();
        let mut rng = StdRng::seed_from_u64(seed);
        let drift = (rng.random::<f64>() * 2.0 - 1.0) * MAX_DRIFT / 2.0;
        Machine {
            kind,
            profile,
            rng,
            fault_rate_per_s: fault_rate_per_hour.max(0.0) / 3600.0,
            now_s: now.as_secs_f64(),
            target_rpm: profile.nominal_rpm,
            mode: Mode::Run,
            rpm: profile.nominal_rpm,
            temp: profile.setpoint + profile.rise_at_nominal + drift,
            drift,
            fault_until_s: None,
            faults: 0,
        }
    }

    pub fn kind(&self) -> MachineKind {
        self.kind
    }

    /// The speed the machine is told to run at (whatever its mode).
    pub fn target_rpm(&self) -> f64 {
        self.target_rpm
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sets the target speed (clamped to 0..=[`MAX_SPEED`]); the rpm
    /// ramps towards it.
    pub fn set_speed(&mut self, rpm: f64) {
        self.target_rpm = if rpm.is_finite() {
            rpm.clamp(0.0, MAX_SPEED)
        } else {
            self.target_rpm
        };
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Whether the machine is overheating now.
    pub fn in_fault(&self) -> bool {
        self.fault_until_s.is_some()
    }

    /// How many faults have started so far.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Starts an overheating fault now (as a random one would), unless
    /// one is under way.
    pub fn start_fault(&mut self, now: Duration) {
        self.advance(now);
        if self.fault_until_s.is_none() {
            self.begin_fault();
        }
    }

    /// Brings the state forward to `now` (earlier times are ignored).
    pub fn advance(&mut self, now: Duration) {
        let target = now.as_secs_f64();
        if target - self.now_s > MAX_CATCH_UP_S {
            self.now_s = target - MAX_CATCH_UP_S;
        }
        while self.now_s < target {
            let dt = (target - self.now_s).min(STEP_S);
            self.step(dt);
            self.now_s += dt;
        }
    }

    /// The state at `now` without measurement noise.
    pub fn state(&mut self, now: Duration) -> Reading {
        self.advance(now);
        self.exact()
    }

    /// A measurement at `now`: the state plus sensor noise.
    pub fn sample(&mut self, now: Duration) -> Reading {
        self.advance(now);
        let exact = self.exact();
        let rpm = if exact.rpm > 0.5 {
            (exact.rpm + gauss(&mut self.rng) * 2.0).max(0.0)
        } else {
            0.0
        };
        Reading {
            temp: exact.temp + gauss(&mut self.rng) * 0.1,
            vibration: (exact.vibration * (1.0 + gauss(&mut self.rng) * 0.05)).max(0.0),
            rpm,
            power: (exact.power * (1.0 + gauss(&mut self.rng) * 0.03)).max(0.0),
        }
    }

    fn load(&self) -> f64 {
        self.rpm / self.profile.nominal_rpm
    }

    fn exact(&self) -> Reading {
        let p = &self.profile;
        let load = self.load();
        let fault = if self.in_fault() { 1.6 } else { 1.0 };
        let vibration = if self.rpm > 0.5 {
            p.vibration_at_nominal * (0.15 + 0.85 * load) * fault
        } else {
            0.05
        };
        let power_fault = if self.in_fault() { 1.1 } else { 1.0 };
        Reading {
            temp: self.temp,
            vibration,
            rpm: self.rpm,
            power: (p.idle_kw + (p.nominal_kw - p.idle_kw) * load) * power_fault,
        }
    }

    fn begin_fault(&mut self) {
        let length = self.rng.random_range(FAULT_MIN_S..FAULT_MAX_S);
        self.fault_until_s = Some(self.now_s + length);
        self.faults += 1;
    }

    /// One integration step of `dt` seconds (at most [`STEP_S`]).
    fn step(&mut self, dt: f64) {
        let p = self.profile;
        // Speed ramps towards its target.
        let wanted = if self.mode == Mode::Run {
            self.target_rpm
        } else {
            0.0
        };
        let max_change = p.ramp_rpm_per_s * dt;
        self.rpm += (wanted - self.rpm).clamp(-max_change, max_change);

        // Faults start at random while running and end on their own.
        match self.fault_until_s {
            Some(until) if self.now_s + dt >= until => self.fault_until_s = None,
            Some(_) => {}
            None => {
                let running = self.rpm > 0.1 * p.nominal_rpm;
                if running && self.rng.random::<f64>() < self.fault_rate_per_s * dt {
                    self.begin_fault();
                }
            }
        }

        // The setpoint drifts slowly and is pulled back to zero drift.
        self.drift += gauss(&mut self.rng) * 0.05 * dt.sqrt() - self.drift * dt / 600.0;
        self.drift = self.drift.clamp(-MAX_DRIFT, MAX_DRIFT);

        let load = self.load();
        let (equilibrium, tau) = if self.in_fault() {
            (FAULT_TEMP + 4.0 * load.min(2.0), FAULT_TAU_S)
        } else {
            (
                p.setpoint + self.drift + p.rise_at_nominal * load,
                TEMP_TAU_S,
            )
        };
        self.temp += (equilibrium - self.temp) * (1.0 - (-dt / tau).exp());
        self.temp += gauss(&mut self.rng) * 0.02 * dt.sqrt();
    }
}

/// A standard normal sample (Box-Muller).
fn gauss(rng: &mut StdRng) -> f64 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn speed_ramps_towards_the_target() {
        let mut m = Machine::new(MachineKind::Press, 1, 0.0, Duration::ZERO);
        assert_eq!(m.state(Duration::ZERO).rpm, 1200.0);
        m.set_speed(2400.0);
        // 150 rpm/s: after 4 s it is 600 rpm up, not yet there.
        let r = m.state(secs(4.0));
        assert!((r.rpm - 1800.0).abs() < 1e-6, "{r:?}");
        assert_eq!(m.state(secs(20.0)).rpm, 2400.0);
        // Idle stops the spindle, whatever the target.
        m.set_mode(Mode::Idle);
        assert_eq!(m.state(secs(40.0)).rpm, 0.0);
        assert_eq!(m.target_rpm(), 2400.0);
        m.set_mode(Mode::Run);
        assert_eq!(m.state(secs(60.0)).rpm, 2400.0);
    }

    #[test]
    fn temperature_and_power_follow_the_load() {
        let mut m = Machine::new(MachineKind::Pump, 7, 0.0, Duration::ZERO);
        let start = m.state(Duration::ZERO);
        assert!((50.0..60.0).contains(&start.temp), "{start:?}");
        m.set_speed(2960.0);
        let hot = m.state(secs(900.0));
        assert!(hot.temp > start.temp + 12.0, "{start:?} -> {hot:?}");
        assert!(hot.temp < 90.0, "high speed alone is no fault: {hot:?}");
        assert!(hot.power > start.power * 1.8, "{start:?} -> {hot:?}");
        assert!(hot.vibration > start.vibration, "{start:?} -> {hot:?}");
        m.set_mode(Mode::Maintenance);
        let cold = m.state(secs(1800.0));
        assert!(cold.temp < 40.0, "{cold:?}");
        assert_eq!(cold.rpm, 0.0);
        assert!((cold.power - 0.4).abs() < 1e-9, "{cold:?}");
    }

    #[test]
    fn temperature_drifts_but_stays_near_its_setpoint() {
        let mut m = Machine::new(MachineKind::Press, 3, 0.0, Duration::ZERO);
        for minute in 1..=240 {
            let r = m.sample(secs(minute as f64 * 60.0));
            assert!((55.0..65.5).contains(&r.temp), "minute {minute}: {r:?}");
            assert!(r.rpm > 1180.0 && r.rpm < 1220.0, "{r:?}");
        }
    }

    #[test]
    fn a_fault_overheats_the_machine_then_it_recovers() {
        let mut m = Machine::new(MachineKind::Lathe, 11, 0.0, Duration::ZERO);
        m.start_fault(secs(10.0));
        assert!(m.in_fault());
        assert_eq!(m.faults(), 1);
        let mut above = Vec::new();
        let mut t = 10.0;
        while t < 1200.0 {
            t += 5.0;
            if m.state(secs(t)).temp > 90.0 {
                above.push(t);
            }
        }
        let (first, last) = (above[0], above[above.len() - 1]);
        assert!(first < 130.0, "heats above 90 within two minutes: {first}");
        assert!(
            last - first >= 90.0,
            "stays hot for minutes: {first}..{last}"
        );
        assert!(last < 10.0 + FAULT_MAX_S + 120.0, "recovers: {last}");
        assert!(!m.in_fault());
        assert!(m.state(secs(1200.0)).temp < 65.0);
    }

    #[test]
    fn faults_happen_at_the_configured_rate() {
        // 2 per hour over 50 simulated hours: about 100 (each lasts minutes,
        // so slightly fewer), never 0, never far more.
        let mut m = Machine::new(MachineKind::Compressor, 5, 2.0, Duration::ZERO);
        let mut off = Machine::new(MachineKind::Compressor, 5, 0.0, Duration::ZERO);
        for minute in 1..=50 * 60 {
            m.advance(secs(minute as f64 * 60.0));
            off.advance(secs(minute as f64 * 60.0));
        }
        assert!((60..=130).contains(&m.faults()), "{}", m.faults());
        assert_eq!(off.faults(), 0);
        // A gap of days is not integrated second by second.
        m.advance(secs(30.0 * 86_400.0));
        assert!(m.faults() < 300, "{}", m.faults());
    }

    #[test]
    fn same_seed_same_readings() {
        let run = |seed| {
            let mut m = Machine::new(MachineKind::Press, seed, 5.0, Duration::ZERO);
            (1..100)
                .map(|i| m.sample(secs(i as f64 * 7.5)).to_json())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn telemetry_json_is_rounded() {
        let r = Reading {
            temp: 61.234,
            vibration: 2.3149,
            rpm: 1479.6,
            power: 7.94,
        };
        assert_eq!(
            r.to_json(),
            json!({"temp": 61.2, "vibration": 2.31, "rpm": 1480, "power": 7.9})
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in MachineKind::ALL {
            assert_eq!(MachineKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MachineKind::for_index(5), MachineKind::Lathe);
        assert_eq!(MachineKind::parse("robot"), None);
        assert_eq!(Mode::parse("maintenance"), Some(Mode::Maintenance));
        assert_eq!(Mode::parse("off"), None);
    }
}
