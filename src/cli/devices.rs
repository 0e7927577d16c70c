use anyhow::Result;

/// One line per input device, then one per output device: `*` marks the default, then its name
/// (and an input's default format).
#[cfg(feature = "mic")]
pub fn run() -> Result<()> {
    let devices = kioku::audio::capture::input_devices()?;
    if devices.is_empty() {
        eprintln!("no input devices found (no microphone); `kioku listen --input FILE.wav` works without one");
    } else {
        println!("input devices:");
    }
    for device in devices {
        let config = match &device.default_config {
            Ok(config) => config.to_string(),
            Err(why) => format!("unusable: {why}"),
        };
        println!("{} {}  ({config})", if device.is_default { "*" } else { " " }, device.name);
    }
    let outputs = kioku::audio::playback::output_devices()?;
    if outputs.is_empty() {
        eprintln!("no output devices found; `--speak-to FILE.wav` writes spoken answers without one");
    } else {
        println!("output devices:");
    }
    for (name, is_default) in outputs {
        println!("{} {name}", if is_default { "*" } else { " " });
    }
    Ok(())
}

#[cfg(not(feature = "mic"))]
pub fn run() -> Result<()> {
    anyhow::bail!("this kioku was built without microphone support; rebuild with the `mic` feature")
}
