//! Query parameters of rendered resources (PS3.18 8.3.5.1): `window`, `viewport`, `quality`.

use dicom_pixeldata::VoiLutFunction;

use super::Format;

/// An explicit VOI window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiLutFunction,
}

/// Output size and, optionally, the source rectangle to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// (sx, sy, sw, sh) in source pixels.
    pub source: Option<(u32, u32, u32, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    pub format: Format,
    /// JPEG quality 1..=100.
    pub quality: u8,
    pub window: Option<Window>,
    pub viewport: Option<Viewport>,
}

/// Largest viewport side we render (a 16k x 16k RGB image is 768 MB).
pub const MAX_VIEWPORT: u32 = 8192;
pub const DEFAULT_QUALITY: u8 = 90;

impl RenderOptions {
    pub fn new(format: Format) -> Self {
        RenderOptions {
            format,
            quality: DEFAULT_QUALITY,
            window: None,
            viewport: None,
        }
    }

    /// Apply the query string's rendering parameters; returns the names of parameters ignored.
    pub fn parse_query(&mut self, raw: &str) -> Result<Vec<String>, BadParameter> {
        let mut ignored = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            match name.as_ref() {
                "quality" => {
                    self.quality = value
                        .trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|q| (1..=100).contains(q))
                        .ok_or_else(|| {
                            BadParameter(format!("quality must be 1..100, got {value:?}"))
                        })?
                }
                "window" => self.window = Some(parse_window(&value)?),
                "viewport" => self.viewport = Some(parse_viewport(&value)?),
                "annotation" | "charset" | "iccprofile" => ignored.push(name.into_owned()),
                other => {
                    return Err(BadParameter(format!(
                        "unknown rendering parameter {other:?}"
                    )))
                }
            }
        }
        Ok(ignored)
    }
}

fn numbers(value: &str, what: &str) -> Result<Vec<f64>, BadParameter> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| BadParameter(format!("{what} {value:?}: {v:?} is not a number")))
        })
        .collect()
}

fn parse_window(value: &str) -> Result<Window, BadParameter> {
    let mut parts = value.splitn(3, ',');
    let nums = numbers(
        &[parts.next().unwrap_or(""), parts.next().unwrap_or("")].join(","),
        "window",
    )?;
    let function = match parts.next().map(|f| f.trim().to_ascii_lowercase()) {
        None => VoiLutFunction::Linear,
        Some(f) => match f.as_str() {
            "linear" => VoiLutFunction::Linear,
            "linear-exact" | "linear_exact" => VoiLutFunction::LinearExact,
            "sigmoid" => VoiLutFunction::Sigmoid,
            _ => {
                return Err(BadParameter(format!(
                    "window function {f:?} is not linear, linear-exact or sigmoid"
                )))
            }
        },
    };
    let (center, width) = (nums[0], nums[1]);
    let min_width = if function == VoiLutFunction::Linear {
        1.0
    } else {
        0.0
    };
    if width < min_width || (function != VoiLutFunction::Linear && width <= 0.0) {
        return Err(BadParameter(format!("window width {width} is too small")));
    }
    Ok(Window {
        center,
        width,
        function,
    })
}

fn parse_viewport(value: &str) -> Result<Viewport, BadParameter> {
    let nums = numbers(value, "viewport")?;
    let dim = |f: f64| -> Result<u32, BadParameter> {
        if f >= 1.0 && f <= f64::from(MAX_VIEWPORT) && f.fract() == 0.0 {
            Ok(f as u32)
        } else {
            Err(BadParameter(format!(
                "viewport size {f} must be a whole number 1..{MAX_VIEWPORT}"
            )))
        }
    };
    let source = |f: f64| -> Result<u32, BadParameter> {
        if f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX) {
            Ok(f as u32)
        } else {
            Err(BadParameter(format!(
                "viewport source value {f} must be a non-negative whole number"
            )))
        }
    };
    match nums.as_slice() {
        [vw, vh] => Ok(Viewport {
            width: dim(*vw)?,
            height: dim(*vh)?,
            source: None,
        }),
        [vw, vh, sx, sy, sw, sh] => Ok(Viewport {
            width: dim(*vw)?,
            height: dim(*vh)?,
            source: Some((
                source(*sx)?,
                source(*sy)?,
                source(*sw)?.max(1),
                source(*sh)?.max(1),
            )),
        }),
        _ => Err(BadParameter(format!(
            "viewport {value:?} is vw,vh or vw,vh,sx,sy,sw,sh"
        ))),
    }
}

/// A rendering parameter that cannot be used, with the reason (answered as 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadParameter(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_bad_ones_are_refused() {
        let mut o = RenderOptions::new(Format::Jpeg);
        let ignored = o
            .parse_query("window=40,400,sigmoid&viewport=128,128&quality=70&annotation=patient")
            .expect("parse");
        assert_eq!(ignored, ["annotation"]);
        assert_eq!(o.quality, 70);
        assert_eq!(
            o.window,
            Some(Window {
                center: 40.0,
                width: 400.0,
                function: VoiLutFunction::Sigmoid
            })
        );
        assert_eq!(
            o.viewport.as_ref().map(|v| (v.width, v.height)),
            Some((128, 128))
        );
        o.parse_query("viewport=64,32,10,20,100,50")
            .expect("source form");
        assert_eq!(o.viewport.and_then(|v| v.source), Some((10, 20, 100, 50)));
        for bad in [
            "quality=0",
            "quality=x",
            "window=40",
            "window=40,0",
            "window=a,b",
            "window=40,400,cubic",
            "viewport=0,10",
            "viewport=10",
            "viewport=100000,10",
            "frobnicate=1",
        ] {
            assert!(
                RenderOptions::new(Format::Png).parse_query(bad).is_err(),
                "{bad}"
            );
        }
    }
}
