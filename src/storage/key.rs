//! The typed keys that name every object the registry stores.

use object_store::path::Path;

use crate::model::{Digest, UploadId};

const UPLOAD_FILE_SUFFIX: &str = ".data";

/// Where an object lives.
pub enum BlobKey<'a> {
    /// `blobs/<alg>/<first two hex>/<hex>`: the content address.
    Blob(&'a Digest),
    /// `uploads/<id>/<part>`: one part of an upload in progress.
    UploadPart(&'a UploadId, &'a str),
    /// `uploads/<id>`: everything of one upload.
    UploadDir(&'a UploadId),
    /// `uploads/<id>.data`: the one file that holds a whole upload on local disk. A file beside
    /// the others rather than a directory per upload: creating and removing a directory for every
    /// blob made ext4 scan its recently deleted inodes on each new one (an eighth of a small
    /// push's server CPU).
    UploadFile(&'a UploadId),
}

impl BlobKey<'_> {
    pub fn path(&self) -> Path {
        match self {
            BlobKey::Blob(d) => {
                let hex = d.hex();
                Path::from_iter(["blobs", d.algorithm().as_str(), &hex[..2], hex])
            }
            BlobKey::UploadPart(id, part) => Path::from_iter(["uploads", id.as_str(), part]),
            BlobKey::UploadDir(id) => Path::from_iter(["uploads", id.as_str()]),
            BlobKey::UploadFile(id) => Path::from_iter(["uploads", &format!("{id}{UPLOAD_FILE_SUFFIX}")]),
        }
    }

    /// The upload an entry of `uploads/` belongs to: a part directory or a local upload file.
    pub fn parse_upload(name: &str) -> Option<UploadId> {
        name.strip_suffix(UPLOAD_FILE_SUFFIX).unwrap_or(name).parse().ok()
    }

    /// The digest a blob path stands for, if it is one.
    pub fn parse_blob(path: &Path) -> Option<Digest> {
        let parts: Vec<_> = path.parts().collect();
        match parts.as_slice() {
            [b, alg, _, hex] if b.as_ref() == "blobs" => format!("{}:{}", alg.as_ref(), hex.as_ref()).parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::Algorithm;

    #[test]
    fn keys_round_trip() {
        let d = Digest::of(Algorithm::Sha256, b"x");
        let p = BlobKey::Blob(&d).path();
        assert_eq!(p.as_ref(), format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex()));
        assert_eq!(BlobKey::parse_blob(&p), Some(d));
        assert!("../x".parse::<UploadId>().is_err());
        assert!(UploadId::new().as_str().parse::<UploadId>().is_ok());
    }

    #[test]
    fn upload_entries_name_their_upload() {
        let id = UploadId::new();
        let file = BlobKey::UploadFile(&id).path();
        assert_eq!(file.as_ref(), format!("uploads/{id}.data"));
        assert_eq!(BlobKey::parse_upload(file.filename().unwrap()), Some(id.clone()));
        assert_eq!(BlobKey::parse_upload(BlobKey::UploadDir(&id).path().filename().unwrap()), Some(id));
        assert_eq!(BlobKey::parse_upload("not-an-upload.data"), None);
        assert_eq!(BlobKey::parse_upload("x.data.data"), None);
    }
}
