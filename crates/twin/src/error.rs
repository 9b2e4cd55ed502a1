//! The one error type of the store. Refusals that belong to a device's
//! request rather than to the store ([`crate::UpdateError`],
//! [`crate::TransitionError`]) are returned inside `Ok` so that callers
//! can answer the device without treating them as failures.

kv::store_error! {
    /// Why a [`crate::DeviceStateStore`] call failed (`NotFound` names
    /// e.g. a `"command"`).
    pub enum TwinError("device state storage") {}
}
