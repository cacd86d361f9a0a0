//! Builds a Unified Kernel Image (UKI): systemd's EFI stub with the kernel,
//! initramfs, command line and os-release appended as PE sections.
//!
//! # Format
//!
//! A UKI is described by the UAPI Group's "Unified Kernel Image"
//! specification; the stub (`linuxx64.efi.stub` from Debian's
//! `systemd-boot-efi`) finds its payload by section name at run time. The
//! container is a PE32+ image (Microsoft "PE Format" specification): a DOS
//! header whose `e_lfanew` points at the `PE\0\0` signature, the COFF file
//! header, the optional header (alignments, image size, checksum, data
//! directories) and the section table, then the section bodies.
//!
//! The builder parses those headers by hand and appends four sections, in
//! this order: `.osrel`, `.cmdline`, `.linux`, `.initrd`. Each starts at
//! the next `SectionAlignment` boundary after the stub's last section in
//! memory, and its body at the next `FileAlignment` boundary in the file,
//! after everything the stub file already holds (Debian's stub keeps a COFF
//! symbol table after its last section, which stays where it is). The new
//! section headers go into the free space between the section table and
//! the first section body; when the stub has no room for them the build
//! fails rather than moving the stub's own sections. `NumberOfSections`,
//! `SizeOfImage`, `SizeOfInitializedData` and the optional header's
//! `CheckSum` are updated.
//!
//! An Authenticode signature on the stub cannot survive new sections, so a
//! certificate table at the end of the stub is dropped; the UKI is signed
//! as a whole later (Secure Boot).
//!
//! # Determinism
//!
//! The output depends only on the stub and the four inputs: padding is
//! zero and nothing (such as a timestamp) is taken from the build host.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::cpio::{Content, set_readable_by_all};

/// Where Debian's `systemd-boot-efi` package installs the x86-64 stub.
pub const DEBIAN_STUB_PATH: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
const COFF_HEADER_SIZE: usize = 20;
const SECTION_HEADER_SIZE: usize = 40;
const PE32_MAGIC: u16 = 0x10B;
const PE32_PLUS_MAGIC: u16 = 0x20B;
/// Index of the certificate table in the data directories.
const CERTIFICATE_TABLE: usize = 4;
/// Initialized data, readable: what `ukify` gives payload sections.
const DATA_SECTION_FLAGS: u32 = 0x0000_0040 | 0x4000_0000;

/// Anything that can go wrong building a UKI.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub could not be read.
    #[error("cannot read EFI stub {}: {source}", path.display())]
    ReadStub {
        /// The stub path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The stub is not a PE image this builder can extend.
    #[error("EFI stub {}: {reason}", path.display())]
    InvalidStub {
        /// The stub path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A section's input could not be read or is unusable.
    #[error("UKI section `{section}`: cannot use {source_description}: {source}")]
    ReadSection {
        /// The section name.
        section: &'static str,
        /// Where the bytes come from.
        source_description: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("cannot write UKI {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What goes into a UKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiInputs {
    /// The systemd EFI stub, usually [`DEBIAN_STUB_PATH`].
    pub stub: PathBuf,
    /// `os-release` contents for the `.osrel` section (boot menus show its
    /// `PRETTY_NAME`).
    pub os_release: Content,
    /// Kernel command line for `.cmdline`, stored exactly as given (without
    /// a trailing newline is best).
    pub cmdline: Content,
    /// The kernel image (`vmlinuz`) for `.linux`.
    pub linux: Content,
    /// The initramfs for `.initrd`.
    pub initrd: Content,
}

/// One section of a PE image, as listed by [`list_sections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Section name (up to 8 bytes, NULs trimmed).
    pub name: String,
    /// Size in memory.
    pub virtual_size: u32,
    /// Address relative to the image base.
    pub virtual_address: u32,
    /// Size of the body in the file (a multiple of `FileAlignment`).
    pub raw_size: u32,
    /// Offset of the body in the file.
    pub raw_offset: u32,
    /// Section flags.
    pub characteristics: u32,
}

/// The parsed headers of a PE image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeHeaders {
    /// Offset of the COFF file header.
    pub coff_offset: usize,
    /// Offset of the optional header.
    pub optional_offset: usize,
    /// Whether the optional header is PE32+ (64-bit).
    pub pe32_plus: bool,
    /// Offset of the section table.
    pub section_table_offset: usize,
    /// Section alignment in memory.
    pub section_alignment: u32,
    /// Section alignment in the file.
    pub file_alignment: u32,
    /// Size of the image in memory.
    pub size_of_image: u32,
    /// Size of all headers in the file.
    pub size_of_headers: u32,
    /// Total size of initialized data sections.
    pub size_of_initialized_data: u32,
    /// The `CheckSum` field.
    pub checksum: u32,
    /// Data directories as (RVA or file offset, size).
    pub data_directories: Vec<(u32, u32)>,
    /// Sections, in table order.
    pub sections: Vec<Section>,
}

impl PeHeaders {
    fn checksum_offset(&self) -> usize {
        self.optional_offset + 64
    }

    fn data_directories_offset(&self) -> usize {
        self.optional_offset + if self.pe32_plus { 112 } else { 96 }
    }
}

/// Parses the DOS, COFF and optional headers and the section table.
pub fn parse_pe(image: &[u8]) -> Result<PeHeaders, String> {
    let u16_at = |at: usize| -> Result<u16, String> {
        image
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("truncated at offset {at}"))
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at offset {at}"))
    };
    if image.get(..2) != Some(b"MZ") {
        return Err("no DOS header (`MZ`)".to_owned());
    }
    let pe_offset = u32_at(0x3C)? as usize;
    if image.get(pe_offset..pe_offset + 4) != Some(PE_SIGNATURE) {
        return Err(format!("no PE signature at offset {pe_offset}"));
    }
    let coff_offset = pe_offset + 4;
    let number_of_sections = u16_at(coff_offset + 2)?;
    let optional_size = usize::from(u16_at(coff_offset + 16)?);
    let optional_offset = coff_offset + COFF_HEADER_SIZE;
    let pe32_plus = match u16_at(optional_offset)? {
        PE32_PLUS_MAGIC => true,
        PE32_MAGIC => false,
        other => return Err(format!("unknown optional header magic {other:#x}")),
    };
    let directory_count_offset = optional_offset + if pe32_plus { 108 } else { 92 };
    let directory_count = u32_at(directory_count_offset)? as usize;
    let directories_offset = directory_count_offset + 4;
    if directories_offset + directory_count * 8 > optional_offset + optional_size {
        return Err("data directories overrun the optional header".to_owned());
    }
    let data_directories = (0..directory_count)
        .map(|index| {
            let at = directories_offset + index * 8;
            Ok((u32_at(at)?, u32_at(at + 4)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let section_table_offset = optional_offset + optional_size;
    let sections = (0..usize::from(number_of_sections))
        .map(|index| {
            let at = section_table_offset + index * SECTION_HEADER_SIZE;
            let raw_name = image
                .get(at..at + 8)
                .ok_or_else(|| format!("section table truncated at entry {index}"))?;
            let name = String::from_utf8_lossy(raw_name)
                .trim_end_matches('\0')
                .to_owned();
            Ok(Section {
                name,
                virtual_size: u32_at(at + 8)?,
                virtual_address: u32_at(at + 12)?,
                raw_size: u32_at(at + 16)?,
                raw_offset: u32_at(at + 20)?,
                characteristics: u32_at(at + 36)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let headers = PeHeaders {
        coff_offset,
        optional_offset,
        pe32_plus,
        section_table_offset,
        section_alignment: u32_at(optional_offset + 32)?,
        file_alignment: u32_at(optional_offset + 36)?,
        size_of_image: u32_at(optional_offset + 56)?,
        size_of_headers: u32_at(optional_offset + 60)?,
        size_of_initialized_data: u32_at(optional_offset + 8)?,
        checksum: u32_at(optional_offset + 64)?,
        data_directories,
        sections,
    };
    for (what, value) in [
        ("SectionAlignment", headers.section_alignment),
        ("FileAlignment", headers.file_alignment),
    ] {
        if !value.is_power_of_two() {
            return Err(format!("{what} {value:#x} is not a power of two"));
        }
    }
    Ok(headers)
}

/// Lists the sections of the PE image in `path`.
pub fn list_sections(path: &Path) -> Result<Vec<Section>, UkiError> {
    let image = std::fs::read(path).map_err(|source| UkiError::ReadStub {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pe(&image)
        .map(|headers| headers.sections)
        .map_err(|reason| UkiError::InvalidStub {
            path: path.to_path_buf(),
            reason,
        })
}

/// Builds the UKI at `out` and returns the sections it appended.
///
/// The image is written under a temporary name next to `out` and renamed
/// into place when complete.
pub fn build_uki(inputs: &UkiInputs, out: &Path) -> Result<Vec<Section>, UkiError> {
    let stub_path = &inputs.stub;
    let invalid = |reason: String| UkiError::InvalidStub {
        path: stub_path.clone(),
        reason,
    };
    let mut stub = std::fs::read(stub_path).map_err(|source| UkiError::ReadStub {
        path: stub_path.clone(),
        source,
    })?;
    let headers = parse_pe(&stub).map_err(invalid)?;
    drop_certificate_table(&mut stub, &headers).map_err(invalid)?;

    let payload: [(&'static str, &Content); 4] = [
        (".osrel", &inputs.os_release),
        (".cmdline", &inputs.cmdline),
        (".linux", &inputs.linux),
        (".initrd", &inputs.initrd),
    ];
    let mut lengths = Vec::with_capacity(payload.len());
    for (section, content) in payload {
        let section_error = |source| UkiError::ReadSection {
            section,
            source_description: content.describe(),
            source,
        };
        let len = content.len().map_err(section_error)?;
        if len == 0 {
            return Err(section_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is empty",
            )));
        }
        let len = u32::try_from(len).map_err(|_| {
            section_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes is more than a PE section can hold"),
            ))
        })?;
        lengths.push(len);
    }

    let new_sections = place_sections(&headers, stub.len(), &payload, &lengths).map_err(invalid)?;
    patch_headers(&mut stub, &headers, &new_sections).map_err(invalid)?;

    let write_error = |source| UkiError::Write {
        path: out.to_path_buf(),
        source,
    };
    let temporary = crate::atomic::temp_file_beside(out, "uki").map_err(write_error)?;
    let mut writer = ChecksumWriter::new(BufWriter::new(temporary.as_file()));
    writer.write_all(&stub).map_err(write_error)?;
    for (section, ((name, content), len)) in new_sections.iter().zip(payload.iter().zip(&lengths)) {
        let padding = u64::from(section.raw_offset) - writer.len;
        writer
            .write_all(&vec![0u8; padding as usize])
            .map_err(write_error)?;
        let section_error = |source| UkiError::ReadSection {
            section: name,
            source_description: content.describe(),
            source,
        };
        let (reader, _) = content.open().map_err(section_error)?;
        let copied =
            io::copy(&mut reader.take(u64::from(*len)), &mut writer).map_err(section_error)?;
        if copied != u64::from(*len) {
            return Err(section_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("expected {len} bytes, read {copied}; the file changed while it was read"),
            )));
        }
        let padding = u64::from(section.raw_size) - copied;
        writer
            .write_all(&vec![0u8; padding as usize])
            .map_err(write_error)?;
    }
    let checksum = writer.checksum();
    let mut file = writer
        .into_inner()
        .into_inner()
        .map_err(|error| write_error(error.into_error()))?;
    file.seek(SeekFrom::Start(headers.checksum_offset() as u64))
        .map_err(write_error)?;
    file.write_all(&checksum.to_le_bytes())
        .map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    set_readable_by_all(temporary.path()).map_err(write_error)?;
    temporary
        .persist(out)
        .map_err(|error| write_error(error.error))?;
    Ok(new_sections)
}

/// Removes an Authenticode certificate table at the end of the stub; it
/// would no longer match once sections are added.
fn drop_certificate_table(stub: &mut Vec<u8>, headers: &PeHeaders) -> Result<(), String> {
    let Some(&(offset, size)) = headers.data_directories.get(CERTIFICATE_TABLE) else {
        return Ok(());
    };
    if size == 0 {
        return Ok(());
    }
    let end = offset as usize + size as usize;
    if end.next_multiple_of(8) < stub.len() {
        return Err(format!(
            "its certificate table ({offset:#x}, {size} bytes) is not at the end of the file"
        ));
    }
    stub.truncate(offset as usize);
    let at = headers.data_directories_offset() + CERTIFICATE_TABLE * 8;
    stub[at..at + 8].fill(0);
    Ok(())
}

/// Computes the headers of the appended sections.
fn place_sections(
    headers: &PeHeaders,
    stub_len: usize,
    payload: &[(&'static str, &Content)],
    lengths: &[u32],
) -> Result<Vec<Section>, String> {
    let overflow = || "the image would exceed 4 GiB".to_owned();
    let section_alignment = u64::from(headers.section_alignment);
    let file_alignment = u64::from(headers.file_alignment);
    let memory_end = headers
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .max()
        .unwrap_or(u64::from(headers.size_of_headers));
    let mut virtual_address = memory_end
        .max(u64::from(headers.size_of_image))
        .next_multiple_of(section_alignment);
    let mut raw_offset = (stub_len as u64).next_multiple_of(file_alignment);
    let mut sections = Vec::with_capacity(payload.len());
    for ((name, _), &len) in payload.iter().zip(lengths) {
        let raw_size = u64::from(len).next_multiple_of(file_alignment);
        sections.push(Section {
            name: (*name).to_owned(),
            virtual_size: len,
            virtual_address: u32::try_from(virtual_address).map_err(|_| overflow())?,
            raw_size: u32::try_from(raw_size).map_err(|_| overflow())?,
            raw_offset: u32::try_from(raw_offset).map_err(|_| overflow())?,
            characteristics: DATA_SECTION_FLAGS,
        });
        virtual_address = (virtual_address + u64::from(len)).next_multiple_of(section_alignment);
        raw_offset += raw_size;
    }
    u32::try_from(virtual_address).map_err(|_| overflow())?;
    u32::try_from(raw_offset).map_err(|_| overflow())?;
    Ok(sections)
}

/// Writes the new section headers and updated fields into the stub's
/// headers (with a zero checksum; the real one is written at the end).
fn patch_headers(
    stub: &mut [u8],
    headers: &PeHeaders,
    new_sections: &[Section],
) -> Result<(), String> {
    let table_end = headers.section_table_offset + headers.sections.len() * SECTION_HEADER_SIZE;
    let new_table_end = table_end + new_sections.len() * SECTION_HEADER_SIZE;
    let first_body = headers
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .min()
        .unwrap_or(usize::MAX);
    let room_end = first_body.min(headers.size_of_headers as usize);
    if new_table_end > room_end {
        return Err(format!(
            "no room for {} more section headers: the section table ends at {table_end:#x} and \
             the headers at {room_end:#x}, {new_table_end:#x} is needed",
            new_sections.len()
        ));
    }
    if stub[table_end..new_table_end].iter().any(|&b| b != 0) {
        return Err(format!(
            "the space after the section table ({table_end:#x}..{new_table_end:#x}) is not free"
        ));
    }
    for (index, section) in new_sections.iter().enumerate() {
        let at = table_end + index * SECTION_HEADER_SIZE;
        let entry = &mut stub[at..at + SECTION_HEADER_SIZE];
        let name = section.name.as_bytes();
        if name.len() > 8 {
            return Err(format!(
                "section name `{}` is longer than 8 bytes",
                section.name
            ));
        }
        entry[..name.len()].copy_from_slice(name);
        entry[8..12].copy_from_slice(&section.virtual_size.to_le_bytes());
        entry[12..16].copy_from_slice(&section.virtual_address.to_le_bytes());
        entry[16..20].copy_from_slice(&section.raw_size.to_le_bytes());
        entry[20..24].copy_from_slice(&section.raw_offset.to_le_bytes());
        // Relocations, line numbers: none.
        entry[36..40].copy_from_slice(&section.characteristics.to_le_bytes());
    }
    let section_count = u16::try_from(headers.sections.len() + new_sections.len())
        .map_err(|_| "too many sections".to_owned())?;
    let put_u32 = |stub: &mut [u8], at: usize, value: u32| {
        stub[at..at + 4].copy_from_slice(&value.to_le_bytes());
    };
    stub[headers.coff_offset + 2..headers.coff_offset + 4]
        .copy_from_slice(&section_count.to_le_bytes());
    let last = new_sections.last().ok_or("no sections to add")?;
    let size_of_image = (u64::from(last.virtual_address) + u64::from(last.virtual_size))
        .next_multiple_of(u64::from(headers.section_alignment));
    let size_of_image =
        u32::try_from(size_of_image).map_err(|_| "the image would exceed 4 GiB".to_owned())?;
    put_u32(stub, headers.optional_offset + 56, size_of_image);
    let added: u64 = new_sections.iter().map(|s| u64::from(s.raw_size)).sum();
    let initialized = u32::try_from(u64::from(headers.size_of_initialized_data) + added)
        .map_err(|_| "SizeOfInitializedData would exceed 4 GiB".to_owned())?;
    put_u32(stub, headers.optional_offset + 8, initialized);
    put_u32(stub, headers.checksum_offset(), 0);
    Ok(())
}

/// Computes the PE image checksum (the algorithm of `CheckSumMappedFile`)
/// of everything written through it: a 16-bit one's-complement-style sum of
/// little-endian words with carries folded back in, plus the file length.
/// The `CheckSum` field itself must be written as zero.
#[derive(Debug)]
struct ChecksumWriter<W> {
    inner: W,
    sum: u32,
    len: u64,
    /// A byte waiting for its partner to form a 16-bit word.
    pending: Option<u8>,
}

impl<W: Write> ChecksumWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            sum: 0,
            len: 0,
            pending: None,
        }
    }

    fn add_word(&mut self, word: u16) {
        self.sum += u32::from(word);
        self.sum = (self.sum & 0xFFFF) + (self.sum >> 16);
    }

    fn checksum(&self) -> u32 {
        let mut sum = self.sum;
        if let Some(last) = self.pending {
            sum += u32::from(last);
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        let sum = (sum & 0xFFFF) + (sum >> 16);
        // The length of a PE image is below 4 GiB (checked when placing
        // sections), so the truncation cannot lose bits.
        sum.wrapping_add(self.len as u32)
    }

    fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        let mut bytes = &buf[..written];
        if let Some(low) = self.pending.take()
            && let Some((&high, rest)) = bytes.split_first()
        {
            self.add_word(u16::from_le_bytes([low, high]));
            bytes = rest;
        }
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.add_word(u16::from_le_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            self.pending = Some(*last);
        }
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The PE checksum of a whole image held in memory (with its own `CheckSum`
/// field treated as zero).
pub fn pe_checksum(image: &[u8], checksum_offset: usize) -> u32 {
    let mut writer = ChecksumWriter::new(io::sink());
    let end = (checksum_offset + 4).min(image.len());
    // Writing to a sink cannot fail.
    let _ = writer.write_all(&image[..checksum_offset.min(image.len())]);
    let _ = writer.write_all(&vec![0u8; end.saturating_sub(checksum_offset)]);
    let _ = writer.write_all(&image[end..]);
    writer.checksum()
}

/// Reads the stub at `path`, for callers that want to check it before a build.
pub fn read_stub(path: &Path) -> Result<PeHeaders, UkiError> {
    let mut image = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut image))
        .map_err(|source| UkiError::ReadStub {
            path: path.to_path_buf(),
            source,
        })?;
    parse_pe(&image).map_err(|reason| UkiError::InvalidStub {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A minimal PE32+ EFI application: one `.text` section, headers
    /// padded to `size_of_headers`.
    fn synthetic_stub(size_of_headers: u32) -> Vec<u8> {
        let mut image = vec![0u8; size_of_headers as usize + 0x200];
        image[0..2].copy_from_slice(b"MZ");
        image[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        image[0x40..0x44].copy_from_slice(PE_SIGNATURE);
        let coff = 0x44;
        image[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        image[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        image[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        image[coff + 18..coff + 20].copy_from_slice(&0x0206u16.to_le_bytes());
        let optional = coff + COFF_HEADER_SIZE;
        let put = |image: &mut Vec<u8>, at: usize, value: u32| {
            image[at..at + 4].copy_from_slice(&value.to_le_bytes());
        };
        image[optional..optional + 2].copy_from_slice(&PE32_PLUS_MAGIC.to_le_bytes());
        put(&mut image, optional + 4, 0x200); // SizeOfCode
        put(&mut image, optional + 16, 0x1000); // AddressOfEntryPoint
        put(&mut image, optional + 32, 0x1000); // SectionAlignment
        put(&mut image, optional + 36, 0x200); // FileAlignment
        put(&mut image, optional + 56, 0x2000); // SizeOfImage
        put(&mut image, optional + 60, size_of_headers);
        image[optional + 68..optional + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI app
        put(&mut image, optional + 108, 16); // NumberOfRvaAndSizes
        let table = optional + 240;
        image[table..table + 5].copy_from_slice(b".text");
        put(&mut image, table + 8, 0x10);
        put(&mut image, table + 12, 0x1000);
        put(&mut image, table + 16, 0x200);
        put(&mut image, table + 20, size_of_headers);
        put(&mut image, table + 36, 0x6000_0020);
        let body = size_of_headers as usize;
        image[body..body + 2].copy_from_slice(&[0xEB, 0xFE]);
        image
    }

    fn inputs(stub: &Path, dir: &Path) -> UkiInputs {
        let linux = dir.join("vmlinuz");
        std::fs::write(&linux, kernel_bytes()).expect("write kernel");
        UkiInputs {
            stub: stub.to_path_buf(),
            os_release: Content::Bytes(b"ID=cairn\nPRETTY_NAME=\"Cairn\"\n".to_vec()),
            cmdline: Content::Bytes(b"console=ttyS0".to_vec()),
            linux: Content::File(linux),
            initrd: Content::Bytes(vec![0xAB; 70_001]),
        }
    }

    fn kernel_bytes() -> Vec<u8> {
        (0..300_003u32).map(|i| (i * 7 % 256) as u8).collect()
    }

    /// Re-parses a built UKI and checks every appended section's placement
    /// and contents, the header fields and the checksum.
    fn check_uki(uki: &[u8], stub: &[u8]) -> PeHeaders {
        let before = parse_pe(stub).expect("stub parses");
        let after = parse_pe(uki).expect("UKI parses");
        let names: Vec<&str> = after.sections.iter().map(|s| s.name.as_str()).collect();
        let old_count = before.sections.len();
        assert_eq!(
            &names[old_count..],
            [".osrel", ".cmdline", ".linux", ".initrd"]
        );
        assert_eq!(after.sections[..old_count], before.sections[..]);
        let expected: [&[u8]; 4] = [
            b"ID=cairn\nPRETTY_NAME=\"Cairn\"\n",
            b"console=ttyS0",
            &kernel_bytes(),
            &[0xAB; 70_001],
        ];
        let mut previous_end = before
            .sections
            .iter()
            .map(|s| s.virtual_address + s.virtual_size.max(s.raw_size))
            .max()
            .expect("stub has sections");
        for (section, data) in after.sections[old_count..].iter().zip(expected) {
            assert_eq!(section.virtual_address % after.section_alignment, 0);
            assert!(
                section.virtual_address >= previous_end,
                "{section:?} overlaps"
            );
            assert_eq!(section.raw_offset % after.file_alignment, 0);
            assert_eq!(section.raw_size % after.file_alignment, 0);
            assert_eq!(section.virtual_size as usize, data.len());
            let start = section.raw_offset as usize;
            assert_eq!(&uki[start..start + data.len()], data, "{}", section.name);
            assert!(
                uki[start + data.len()..start + section.raw_size as usize]
                    .iter()
                    .all(|&b| b == 0)
            );
            previous_end = section.virtual_address + section.virtual_size;
        }
        let last = after.sections.last().expect("sections");
        assert_eq!(
            after.size_of_image,
            (last.virtual_address + last.virtual_size).next_multiple_of(after.section_alignment)
        );
        assert_eq!(uki.len(), (last.raw_offset + last.raw_size) as usize);
        let added: u32 = after.sections[old_count..].iter().map(|s| s.raw_size).sum();
        assert_eq!(
            after.size_of_initialized_data,
            before.size_of_initialized_data + added
        );
        assert_eq!(after.checksum, pe_checksum(uki, after.checksum_offset()));
        assert_ne!(after.checksum, 0);
        after
    }

    fn objdump_sections(path: &Path) -> Option<String> {
        let Ok(output) = Command::new("objdump").arg("-h").arg(path).output() else {
            eprintln!("skipped cross-check: objdump not installed (binutils)");
            return None;
        };
        assert!(output.status.success(), "objdump -h: {output:?}");
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    #[test]
    fn checksum_matches_reference_values() {
        // Two words 0x0201 and 0x0403 plus the length 4.
        assert_eq!(pe_checksum(&[1, 2, 3, 4], 100), 0x0201 + 0x0403 + 4);
        // Carries fold back into the low 16 bits.
        assert_eq!(pe_checksum(&[0xFF, 0xFF, 0x02, 0x00], 100), 0x0002 + 4);
        // An odd trailing byte counts as a word on its own.
        assert_eq!(pe_checksum(&[0, 0, 7], 100), 7 + 3);
        // The checksum field is skipped.
        assert_eq!(pe_checksum(&[9, 9, 9, 9, 1, 0], 0), 1 + 6);
    }

    #[test]
    fn builds_uki_from_synthetic_stub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stub_path = dir.path().join("stub.efi");
        let stub = synthetic_stub(0x400);
        std::fs::write(&stub_path, &stub).expect("write stub");
        let out = dir.path().join("cairn.efi");
        let sections = build_uki(&inputs(&stub_path, dir.path()), &out).expect("build");
        assert_eq!(sections[0].virtual_address, 0x2000);
        assert_eq!(sections[0].raw_offset, 0x600);
        let uki = std::fs::read(&out).expect("read");
        check_uki(&uki, &stub);

        if let Some(listing) = objdump_sections(&out) {
            for (name, size) in [
                (".osrel", 29),
                (".cmdline", 13),
                (".linux", 300_003),
                (".initrd", 70_001),
            ] {
                let line = listing
                    .lines()
                    .find(|line| line.split_whitespace().nth(1) == Some(name))
                    .unwrap_or_else(|| panic!("{name} missing from objdump -h:\n{listing}"));
                let objdump_size = line.split_whitespace().nth(2).expect("size column");
                assert_eq!(
                    u32::from_str_radix(objdump_size, 16).expect("hex size"),
                    size,
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn same_inputs_give_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stub_path = dir.path().join("stub.efi");
        std::fs::write(&stub_path, synthetic_stub(0x400)).expect("write stub");
        let first = dir.path().join("a.efi");
        let second = dir.path().join("b.efi");
        build_uki(&inputs(&stub_path, dir.path()), &first).expect("first");
        build_uki(&inputs(&stub_path, dir.path()), &second).expect("second");
        assert_eq!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&second).expect("read")
        );
    }

    #[test]
    fn refuses_stub_without_header_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stub_path = dir.path().join("stub.efi");
        // The section table ends at 0x17C; four more headers need 0x21C.
        std::fs::write(&stub_path, synthetic_stub(0x200)).expect("write stub");
        let out = dir.path().join("cairn.efi");
        let error = build_uki(&inputs(&stub_path, dir.path()), &out).expect_err("no room");
        assert!(error.to_string().contains("no room"), "{error}");
        assert!(!out.exists());
    }

    #[test]
    fn refuses_bad_stubs_and_empty_sections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cairn.efi");
        let not_pe = dir.path().join("not-pe.efi");
        std::fs::write(&not_pe, b"MZ but nothing else").expect("write");
        assert!(matches!(
            build_uki(&inputs(&not_pe, dir.path()), &out),
            Err(UkiError::InvalidStub { .. })
        ));
        let stub_path = dir.path().join("stub.efi");
        std::fs::write(&stub_path, synthetic_stub(0x400)).expect("write stub");
        let mut empty_cmdline = inputs(&stub_path, dir.path());
        empty_cmdline.cmdline = Content::Bytes(Vec::new());
        let error = build_uki(&empty_cmdline, &out).expect_err("empty cmdline");
        assert!(error.to_string().contains(".cmdline"), "{error}");
        assert!(!out.exists());
    }

    #[test]
    fn drops_trailing_certificate_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stub = synthetic_stub(0x400);
        let certificate_at = stub.len() as u32;
        stub.extend_from_slice(&[0x30; 16]);
        let headers = parse_pe(&stub).expect("parse");
        let at = headers.data_directories_offset() + CERTIFICATE_TABLE * 8;
        stub[at..at + 4].copy_from_slice(&certificate_at.to_le_bytes());
        stub[at + 4..at + 8].copy_from_slice(&16u32.to_le_bytes());
        let stub_path = dir.path().join("signed.efi");
        std::fs::write(&stub_path, &stub).expect("write stub");
        let out = dir.path().join("cairn.efi");
        build_uki(&inputs(&stub_path, dir.path()), &out).expect("build");
        let uki = std::fs::read(&out).expect("read");
        let parsed = parse_pe(&uki).expect("parse");
        assert_eq!(parsed.data_directories[CERTIFICATE_TABLE], (0, 0));
        assert_eq!(parsed.sections[1].raw_offset, certificate_at);
    }

    /// Uses Debian's real stub when `systemd-boot-efi` is installed.
    #[test]
    fn builds_uki_from_debian_stub() {
        let stub_path = Path::new(DEBIAN_STUB_PATH);
        let Ok(stub) = std::fs::read(stub_path) else {
            eprintln!("skipped: {DEBIAN_STUB_PATH} not installed (package systemd-boot-efi)");
            return;
        };
        let headers = parse_pe(&stub).expect("stub parses");
        // The stub's own checksum, computed by the linker that produced it,
        // checks our implementation independently.
        if headers.checksum != 0 {
            assert_eq!(
                pe_checksum(&stub, headers.checksum_offset()),
                headers.checksum
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cairn.efi");
        build_uki(&inputs(stub_path, dir.path()), &out).expect("build");
        let uki = std::fs::read(&out).expect("read");
        let after = check_uki(&uki, &stub);
        assert!(after.sections.iter().any(|s| s.name == ".sdmagic"));
        if let Some(listing) = objdump_sections(&out) {
            let names: Vec<&str> = listing
                .lines()
                .filter_map(|line| line.split_whitespace().nth(1))
                .filter(|name| name.starts_with('.'))
                .collect();
            let tail = &names[names.len() - 4..];
            assert_eq!(
                tail,
                [".osrel", ".cmdline", ".linux", ".initrd"],
                "{listing}"
            );
        }
    }
}
