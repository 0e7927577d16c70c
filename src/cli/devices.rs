use anyhow::Result;

/// One line per input device: `*` marks the default, then its name and default format.
#[cfg(feature = "mic")]
pub fn run() -> Result<()> {
    let devices = kioku::audio::capture::input_devices()?;
    if devices.is_empty() {
        eprintln!("no input devices found (no microphone); `kioku listen --input FILE.wav` works without one");
    }
    for device in devices {
        let config = match &device.default_config {
            Ok(config) => config.to_string(),
            Err(why) => format!("unusable: {why}"),
        };
        println!("{} {}  ({config})", if device.is_default { "*" } else { " " }, device.name);
    }
    Ok(())
}

#[cfg(not(feature = "mic"))]
pub fn run() -> Result<()> {
    anyhow::bail!("this kioku was built without microphone support; rebuild with the `mic` feature")
}
