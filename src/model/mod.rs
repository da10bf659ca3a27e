//! The pipeline's own types: what `scan` hands from `defender` to `store`, so that neither of those
//! two needs the other's. They hold data and check it (a machine id's form), nothing more: no I/O,
//! no SQL, no HTTP.

mod changes;
mod device;
mod export_states;
mod export_tally;
mod json;
mod machine;
mod machine_id;
mod run;

pub use changes::{KbChange, KbChangeKind, KbChanges, MAX_KB_CHANGES};
pub use device::{DeviceOutcome, DeviceResult, PlannedDevice, ScanSource};
pub use export_states::{ExportCounts, ExportKb, ExportState, ExportStates};
pub use export_tally::{ExportTally, KbRow, MAX_EXPORT_DEVICES, MAX_EXPORT_KBS, TallyFull};
pub use json::{MAX_DEPTH, as_json_string, storable};
pub use machine::{Machine, MissingKb};
pub use machine_id::{MachineId, validate_machine_id};
pub use run::{CallCount, CallCounters, RunCounters, RunStatus};
