//! What metadata an output carries. By default only authorship survives (Artist,
//! Copyright): camera serials and GPS positions should not leak into a shop's
//! public images. `keep` copies the EXIF, minus the orientation (already applied to
//! the pixels) and the thumbnail (it would show the old image).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MetadataMode {
    /// Keep only Artist and Copyright.
    #[default]
    Strip,
    /// Copy EXIF except orientation, thumbnail and maker notes.
    Keep,
}

/// Builds the EXIF (TIFF structure, no `Exif\0\0` header) to embed, if any.
pub fn output_exif(source: Option<&[u8]>, mode: MetadataMode) -> Option<Vec<u8>> {
    let source = source?;
    let exif = exif::Reader::new().read_raw(source.to_vec()).ok()?;
    let fields: Vec<&exif::Field> = exif
        .fields()
        .filter(|f| f.ifd_num == exif::In::PRIMARY)
        .filter(|f| match mode {
            MetadataMode::Strip => matches!(f.tag, exif::Tag::Artist | exif::Tag::Copyright),
            MetadataMode::Keep => !matches!(
                f.tag,
                exif::Tag::Orientation
                    | exif::Tag::MakerNote
                    | exif::Tag::ExifIFDPointer
                    | exif::Tag::GPSInfoIFDPointer
                    | exif::Tag::InteropIFDPointer
                    | exif::Tag::JPEGInterchangeFormat
                    | exif::Tag::JPEGInterchangeFormatLength
            ),
        })
        .collect();
    if fields.is_empty() {
        return None;
    }
    let mut writer = exif::experimental::Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    writer.write(&mut out, false).ok()?;
    Some(out.into_inner())
}

/// The IPTC digital source type of an AI-edited photo: IPTC's NewsCodes
/// vocabulary defines `compositeWithTrainedAlgorithmicMedia` as media that
/// combine captured content with content made by a trained model, which is
/// what a super-resolution network does to a photo (it invents detail between
/// the captured pixels). Google Merchant Center reads this property to tell
/// AI-edited product images (docs/provenance.md has the sources).
pub const AI_EDITED_SOURCE_TYPE: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia";

/// Which network contributed pixels to an output, for its XMP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub model: String,
    pub scale: u32,
}

fn xml_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c if c.is_control() => String::new(),
            c => c.to_string(),
        })
        .collect()
}

/// The XMP packet that says a neural model edited the image: the IPTC
/// DigitalSourceType, plus the model and scale under upscaled's own namespace
/// and as the XMP CreatorTool, so any XMP reader can show it.
pub fn provenance_xmp(p: &Provenance) -> Vec<u8> {
    let model = xml_escape(&p.model);
    let tool = format!(
        "upscaled {} ({model}, {}x)",
        env!("CARGO_PKG_VERSION"),
        p.scale
    );
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
         <x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n\
         <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n\
         <rdf:Description rdf:about=\"\"\n\
         \x20 xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\"\n\
         \x20 xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n\
         \x20 xmlns:upscaled=\"urn:upscaled:xmp:1.0/\">\n\
         <Iptc4xmpExt:DigitalSourceType>{AI_EDITED_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>\n\
         <xmp:CreatorTool>{tool}</xmp:CreatorTool>\n\
         <upscaled:Model>{model}</upscaled:Model>\n\
         <upscaled:Scale>{}</upscaled:Scale>\n\
         </rdf:Description>\n\
         </rdf:RDF>\n\
         </x:xmpmeta>\n\
         <?xpacket end=\"r\"?>",
        p.scale
    )
    .into_bytes()
}

/// The sRGB ICC profile the output pixels are in (decode converts every
/// tagged input to sRGB), for `metadata: keep`.
pub fn srgb_icc() -> Vec<u8> {
    lcms2::Profile::new_srgb().icc().unwrap_or_default()
}

/// Reads one ASCII tag from an EXIF blob (used by tests and the log line).
pub fn ascii_tag(exif_blob: &[u8], tag: exif::Tag) -> Option<String> {
    let exif = exif::Reader::new().read_raw(exif_blob.to_vec()).ok()?;
    let field = exif.get_field(tag, exif::In::PRIMARY)?;
    match &field.value {
        exif::Value::Ascii(parts) => parts.first().map(|p| {
            String::from_utf8_lossy(p)
                .trim_end_matches('\0')
                .to_string()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_exif() -> Vec<u8> {
        let artist = exif::Field {
            tag: exif::Tag::Artist,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Ascii(vec![b"Ada Photographer".to_vec()]),
        };
        let serial = exif::Field {
            tag: exif::Tag::BodySerialNumber,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Ascii(vec![b"SN123".to_vec()]),
        };
        let orientation = exif::Field {
            tag: exif::Tag::Orientation,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Short(vec![6]),
        };
        let mut w = exif::experimental::Writer::new();
        w.push_field(&artist);
        w.push_field(&serial);
        w.push_field(&orientation);
        let mut out = std::io::Cursor::new(Vec::new());
        w.write(&mut out, false).unwrap();
        out.into_inner()
    }

    #[test]
    fn strip_keeps_only_authorship() {
        let out = output_exif(Some(&sample_exif()), MetadataMode::Strip).unwrap();
        assert_eq!(
            ascii_tag(&out, exif::Tag::Artist).as_deref(),
            Some("Ada Photographer")
        );
        assert_eq!(ascii_tag(&out, exif::Tag::BodySerialNumber), None);
    }

    #[test]
    fn keep_drops_orientation_only() {
        let out = output_exif(Some(&sample_exif()), MetadataMode::Keep).unwrap();
        assert_eq!(
            ascii_tag(&out, exif::Tag::BodySerialNumber).as_deref(),
            Some("SN123")
        );
        let parsed = exif::Reader::new().read_raw(out).unwrap();
        assert!(
            parsed
                .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .is_none()
        );
    }

    #[test]
    fn corrupt_exif_yields_nothing_not_an_error() {
        assert!(output_exif(Some(b"II*\0garbage"), MetadataMode::Keep).is_none());
    }
}
