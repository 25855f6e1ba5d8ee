//! Adds an XMP packet to an AVIF file as a metadata item (ISO/IEC 23008-12: an
//! item of type `mime` with content type `application/rdf+xml`, linked to the
//! primary image by a `cdsc` reference). The AVIF writer under ravif can embed
//! EXIF but not XMP, so the encoded file is rewritten here: `iinf`, `iloc` and
//! `iref` in `meta` get one entry each, the packet goes at the end of `mdat`,
//! and every file offset behind the grown `meta` moves by its growth.

const XMP_CONTENT_TYPE: &[u8] = b"application/rdf+xml\0";

/// One box: where it starts in its parent, its type, its header and payload.
struct Bx<'a> {
    typ: [u8; 4],
    start: usize,
    header: usize,
    data: &'a [u8],
}

impl Bx<'_> {
    fn payload(&self) -> &[u8] {
        &self.data[self.header..]
    }
}

fn boxes(bytes: &[u8]) -> Result<Vec<Bx<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            return Err("truncated box header".into());
        }
        let size32 = u32::from_be_bytes(rest[..4].try_into().unwrap()) as u64;
        let typ: [u8; 4] = rest[4..8].try_into().unwrap();
        let (size, header) = match size32 {
            0 => (rest.len() as u64, 8),
            1 => {
                let large = rest.get(8..16).ok_or("truncated large box size")?;
                (u64::from_be_bytes(large.try_into().unwrap()), 16)
            }
            s => (s, 8),
        };
        if size < header as u64 || size > rest.len() as u64 {
            return Err(format!(
                "box {} has a bad size",
                String::from_utf8_lossy(&typ)
            ));
        }
        let size = size as usize;
        out.push(Bx {
            typ,
            start: at,
            header,
            data: &rest[..size],
        });
        at += size;
    }
    Ok(out)
}

fn make_box(typ: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 8);
    b.extend_from_slice(&(payload.len() as u32 + 8).to_be_bytes());
    b.extend_from_slice(typ);
    b.extend_from_slice(payload);
    b
}

/// Reads and writes big-endian integers of 0, 2, 4 or 8 bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn uint(&mut self, size: usize) -> Result<u64, String> {
        let field = self
            .bytes
            .get(self.at..self.at + size)
            .ok_or("iloc is truncated")?;
        self.at += size;
        Ok(field.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    }
}

fn put_uint(out: &mut Vec<u8>, value: u64, size: usize) -> Result<(), String> {
    if size < 8 && value >> (8 * size) != 0 {
        return Err(format!("{value} does not fit in {size} bytes"));
    }
    for i in (0..size).rev() {
        out.push((value >> (8 * i)) as u8);
    }
    Ok(())
}

/// The highest item id in `iinf`, and the new `iinf` with a `mime` item `id`.
fn grow_iinf(iinf: &Bx, new_id: impl Fn(u32) -> u32) -> Result<(Vec<u8>, u32), String> {
    let p = iinf.payload();
    let version = *p.first().ok_or("empty iinf")?;
    let count_size = if version == 0 { 2 } else { 4 };
    let mut c = Cursor { bytes: p, at: 4 };
    let count = c.uint(count_size)?;
    let mut highest = 0u32;
    for entry in boxes(&p[4 + count_size..])? {
        let e = entry.payload();
        let id = match e.first() {
            Some(2) => e.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32),
            Some(3) => e
                .get(4..8)
                .map(|b| u32::from_be_bytes(b.try_into().unwrap())),
            _ => return Err("an infe box of a version before 2".into()),
        };
        highest = highest.max(id.ok_or("truncated infe")?);
    }
    let id = new_id(highest);
    let mut infe = Vec::new();
    if id <= u16::MAX as u32 {
        infe.extend_from_slice(&[2, 0, 0, 0]);
        infe.extend_from_slice(&(id as u16).to_be_bytes());
    } else {
        infe.extend_from_slice(&[3, 0, 0, 0]);
        infe.extend_from_slice(&id.to_be_bytes());
    }
    infe.extend_from_slice(&[0, 0]); // item_protection_index
    infe.extend_from_slice(b"mime");
    infe.push(0); // item_name: empty
    infe.extend_from_slice(XMP_CONTENT_TYPE);
    let mut payload = p[..4].to_vec();
    put_uint(&mut payload, count + 1, count_size)?;
    payload.extend_from_slice(&p[4 + count_size..]);
    payload.extend_from_slice(&make_box(b"infe", &infe));
    Ok((make_box(b"iinf", &payload), id))
}

/// The `iloc` with every file offset at or past `moved_from` moved by `delta`,
/// and one more item: `id` at `xmp_offset`, `xmp_len` bytes.
fn grow_iloc(
    iloc: &Bx,
    moved_from: u64,
    delta: u64,
    id: u32,
    xmp_offset: u64,
    xmp_len: u64,
) -> Result<Vec<u8>, String> {
    let p = iloc.payload();
    let version = *p.first().ok_or("empty iloc")?;
    if version > 2 {
        return Err(format!("iloc version {version}"));
    }
    let mut c = Cursor { bytes: p, at: 4 };
    let sizes = c.uint(2)? as u16;
    let offset_size = (sizes >> 12) as usize;
    let length_size = ((sizes >> 8) & 15) as usize;
    let base_size = ((sizes >> 4) & 15) as usize;
    let index_size = if version > 0 {
        (sizes & 15) as usize
    } else {
        0
    };
    let id_size = if version < 2 { 2 } else { 4 };
    let count = c.uint(id_size)?;
    let mut out = p[..6].to_vec();
    put_uint(&mut out, count + 1, id_size)?;
    let moved = |v: u64| if v >= moved_from { v + delta } else { v };
    for _ in 0..count {
        put_uint(&mut out, c.uint(id_size)?, id_size)?;
        let method = if version > 0 {
            let m = c.uint(2)?;
            put_uint(&mut out, m, 2)?;
            m & 15
        } else {
            0
        };
        put_uint(&mut out, c.uint(2)?, 2)?; // data_reference_index
        let base = c.uint(base_size)?;
        // A file offset (method 0) is base + extent offset: the extent offset
        // moves, or the base when extents carry no offset.
        let shift_base = method == 0 && offset_size == 0;
        put_uint(
            &mut out,
            if shift_base { moved(base) } else { base },
            base_size,
        )?;
        let extents = c.uint(2)?;
        put_uint(&mut out, extents, 2)?;
        for _ in 0..extents {
            put_uint(&mut out, c.uint(index_size)?, index_size)?;
            let offset = c.uint(offset_size)?;
            let offset = if method == 0 && offset_size > 0 && base + offset >= moved_from {
                offset + delta
            } else {
                offset
            };
            put_uint(&mut out, offset, offset_size)?;
            put_uint(&mut out, c.uint(length_size)?, length_size)?;
        }
    }
    if c.at != p.len() {
        return Err("iloc has trailing bytes".into());
    }
    if offset_size == 0 || length_size == 0 {
        return Err("iloc has no room for an extent".into());
    }
    put_uint(&mut out, id as u64, id_size)?;
    if version > 0 {
        put_uint(&mut out, 0, 2)?; // construction method 0: file offset
    }
    put_uint(&mut out, 0, 2)?;
    put_uint(&mut out, 0, base_size)?;
    put_uint(&mut out, 1, 2)?;
    put_uint(&mut out, 0, index_size)?;
    put_uint(&mut out, xmp_offset, offset_size)?;
    put_uint(&mut out, xmp_len, length_size)?;
    Ok(make_box(b"iloc", &out))
}

/// `iref` with one more `cdsc` reference from `from` to `to` (a new `iref`
/// when there was none).
fn grow_iref(iref: Option<&Bx>, from: u32, to: u32) -> Result<Vec<u8>, String> {
    let (mut payload, wide) = match iref {
        Some(b) => {
            let p = b.payload();
            (p.to_vec(), *p.first().ok_or("empty iref")? == 1)
        }
        None => {
            let wide = from > u16::MAX as u32 || to > u16::MAX as u32;
            (vec![u8::from(wide), 0, 0, 0], wide)
        }
    };
    let mut reference = Vec::new();
    let id_size = if wide { 4 } else { 2 };
    put_uint(&mut reference, from as u64, id_size)?;
    put_uint(&mut reference, 1, 2)?;
    put_uint(&mut reference, to as u64, id_size)?;
    payload.extend_from_slice(&make_box(b"cdsc", &reference));
    Ok(make_box(b"iref", &payload))
}

/// `avif` with `xmp` added as a metadata item of its primary image.
pub fn add_xmp(avif: &[u8], xmp: &[u8]) -> Result<Vec<u8>, String> {
    let top = boxes(avif)?;
    let meta_at = top
        .iter()
        .position(|b| &b.typ == b"meta")
        .ok_or("no meta box")?;
    let mdat = top
        .last()
        .filter(|b| &b.typ == b"mdat")
        .ok_or("mdat is not the last box")?;
    if top.iter().position(|b| &b.typ == b"mdat") < Some(meta_at) {
        return Err("mdat comes before meta".into());
    }
    let meta = &top[meta_at];
    let meta_payload = meta.payload();
    let children = boxes(meta_payload.get(4..).ok_or("empty meta")?)?;
    let find = |t: &[u8; 4]| children.iter().find(|b| &b.typ == t);
    let pitm = find(b"pitm").ok_or("no pitm box")?.payload();
    let primary = match pitm.first() {
        Some(0) => pitm
            .get(4..6)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as u32),
        Some(_) => pitm
            .get(4..8)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap())),
        None => None,
    }
    .ok_or("truncated pitm")?;
    let iloc = find(b"iloc").ok_or("no iloc box")?;
    let iinf = find(b"iinf").ok_or("no iinf box")?;
    let (new_iinf, id) = grow_iinf(iinf, |highest| highest.max(primary) + 1)?;
    let new_iref = grow_iref(find(b"iref"), id, primary)?;

    // The grown iloc's size does not depend on the offsets it holds, so one
    // trial build with zeros gives the growth of meta.
    let trial_iloc = grow_iloc(iloc, u64::MAX, 0, id, 0, 0)?;
    let old_meta_len = meta.data.len() as u64;
    let iref_growth = new_iref.len() - find(b"iref").map_or(0, |b| b.data.len());
    let new_meta_len = old_meta_len
        + (new_iinf.len() - iinf.data.len()) as u64
        + (trial_iloc.len() - iloc.data.len()) as u64
        + iref_growth as u64;
    if meta.header != 8 || new_meta_len > u32::MAX as u64 {
        return Err("meta box too large".into());
    }
    let delta = new_meta_len - old_meta_len;
    let mdat_end = (mdat.start + mdat.data.len()) as u64;
    let new_iloc = grow_iloc(
        iloc,
        meta.start as u64 + old_meta_len,
        delta,
        id,
        mdat_end + delta,
        xmp.len() as u64,
    )?;

    let mut new_meta = meta_payload[..4].to_vec();
    for child in &children {
        match &child.typ {
            b"iinf" => {
                new_meta.extend_from_slice(&new_iinf);
                if find(b"iref").is_none() {
                    new_meta.extend_from_slice(&new_iref);
                }
            }
            b"iloc" => new_meta.extend_from_slice(&new_iloc),
            b"iref" => new_meta.extend_from_slice(&new_iref),
            _ => new_meta.extend_from_slice(child.data),
        }
    }
    let new_meta = make_box(b"meta", &new_meta);
    debug_assert_eq!(new_meta.len() as u64, new_meta_len);

    let mut out = Vec::with_capacity(avif.len() + new_meta.len() + xmp.len());
    out.extend_from_slice(&avif[..meta.start]);
    out.extend_from_slice(&new_meta);
    out.extend_from_slice(&avif[meta.start + meta.data.len()..mdat.start]);
    let new_mdat_len = mdat.data.len() + xmp.len();
    match mdat.header {
        16 => {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&(new_mdat_len as u64).to_be_bytes());
        }
        _ if new_mdat_len <= u32::MAX as usize => {
            out.extend_from_slice(&(new_mdat_len as u32).to_be_bytes());
            out.extend_from_slice(b"mdat");
        }
        _ => return Err("mdat too large".into()),
    }
    out.extend_from_slice(mdat.payload());
    out.extend_from_slice(xmp);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_avif(alpha: bool, exif: bool) -> Vec<u8> {
        let px = vec![rgb::RGBA8::new(200, 40, 90, 128); 64];
        let mut enc = ravif::Encoder::new().with_speed(10);
        if exif {
            enc = enc.with_exif(b"MM\0*\0\0\0\x08\0\0\0\0\0\0".as_slice());
        }
        if alpha {
            enc.encode_rgba(ravif::Img::new(&px, 8, 8))
                .unwrap()
                .avif_file
        } else {
            let rgb: Vec<rgb::RGB8> = px.iter().map(|p| p.rgb()).collect();
            enc.encode_rgb(ravif::Img::new(&rgb, 8, 8))
                .unwrap()
                .avif_file
        }
    }

    /// Every item's extents after the rewrite point at the same bytes as before.
    fn extents(avif: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let top = boxes(avif).unwrap();
        let meta = top.iter().find(|b| &b.typ == b"meta").unwrap();
        let children = boxes(&meta.payload()[4..]).unwrap();
        let iloc = children
            .iter()
            .find(|b| &b.typ == b"iloc")
            .unwrap()
            .payload();
        let mut c = Cursor { bytes: iloc, at: 4 };
        let sizes = c.uint(2).unwrap();
        let (os, ls, bs) = (
            (sizes >> 12) as usize,
            ((sizes >> 8) & 15) as usize,
            ((sizes >> 4) & 15) as usize,
        );
        let version = iloc[0];
        let is = if version > 0 {
            (sizes & 15) as usize
        } else {
            0
        };
        let ids = if version < 2 { 2 } else { 4 };
        let n = c.uint(ids).unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let id = c.uint(ids).unwrap();
            if version > 0 {
                c.uint(2).unwrap();
            }
            c.uint(2).unwrap();
            let base = c.uint(bs).unwrap();
            for _ in 0..c.uint(2).unwrap() {
                c.uint(is).unwrap();
                let off = (base + c.uint(os).unwrap()) as usize;
                let len = c.uint(ls).unwrap() as usize;
                out.push((id, avif[off..off + len].to_vec()));
            }
        }
        out
    }

    #[test]
    fn xmp_is_an_item_and_every_other_item_keeps_its_bytes() {
        let xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>".to_vec();
        for (alpha, exif) in [(false, false), (true, false), (false, true), (true, true)] {
            let before = small_avif(alpha, exif);
            let after = add_xmp(&before, &xmp).unwrap();
            let old = extents(&before);
            let new = extents(&after);
            assert_eq!(&new[..old.len()], &old[..], "alpha {alpha} exif {exif}");
            assert_eq!(new.len(), old.len() + 1);
            assert_eq!(new.last().unwrap().1, xmp);
            let text = String::from_utf8_lossy(&after);
            assert!(text.contains("application/rdf+xml") && text.contains("cdsc"));
        }
    }

    #[test]
    fn a_file_that_is_not_avif_is_refused() {
        assert!(add_xmp(b"not an avif file at all", b"x").is_err());
        let mut truncated = small_avif(false, false);
        truncated.truncate(40);
        assert!(add_xmp(&truncated, b"x").is_err());
    }
}
