//! What kind of agent a contrast or radiopharmaceutical administration gave, for allergy
//! checks: from the coded entries first (SNOMED CT codes of DICOM CID 12/13, or the sequence
//! the agent came from), then a table of generic and brand names, then the old substring
//! rules. And whether a patient's free-text allergies name that kind of agent.

use pacs_fhir::coding::{system_uri, Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentClass {
    IodinatedContrast,
    GadoliniumContrast,
    Radiopharmaceutical,
}

impl AgentClass {
    pub fn label(self) -> &'static str {
        match self {
            AgentClass::IodinatedContrast => "iodinated contrast",
            AgentClass::GadoliniumContrast => "gadolinium contrast",
            AgentClass::Radiopharmaceutical => "radiopharmaceutical",
        }
    }

    /// Words of an allergy record that name the class as a whole (upper case, matched as
    /// substrings). "Contrast" and "dye" alone mean iodinated contrast in allergy lists;
    /// gadolinium needs its own name or "MR(I) contrast".
    fn allergy_words(self) -> &'static [&'static str] {
        match self {
            AgentClass::IodinatedContrast => &[
                "IODIN",
                "IODID",
                "CONTRAST",
                "DYE",
                "RADIOCONTRAST",
                "X-RAY CONTRAST",
            ],
            AgentClass::GadoliniumContrast => &["GADOLIN", "MRI CONTRAST", "MR CONTRAST"],
            AgentClass::Radiopharmaceutical => &[
                "RADIOPHARMACEUTICAL",
                "RADIOTRACER",
                "RADIOACTIVE",
                "TRACER",
                "ISOTOPE",
            ],
        }
    }
}

/// SNOMED CT codes of agents and ingredients (DICOM CID 12 "Imaging Contrast Agent" and
/// CID 13 "Imaging Contrast Agent Ingredient").
const SNOMED: &[(&str, AgentClass)] = &[
    // Iodine, iodinated agents.
    ("44588005", AgentClass::IodinatedContrast), // Iodine
    ("109218004", AgentClass::IodinatedContrast), // Iohexol
    ("353962003", AgentClass::IodinatedContrast), // Iodixanol
    ("109219007", AgentClass::IodinatedContrast), // Iopamidol
    ("353903006", AgentClass::IodinatedContrast), // Iopromide
    ("109222009", AgentClass::IodinatedContrast), // Ioversol
    ("409484007", AgentClass::IodinatedContrast), // Ioxilan
    ("412228003", AgentClass::IodinatedContrast), // Ioxaglate
    ("353912008", AgentClass::IodinatedContrast), // Iothalamate
    ("12335007", AgentClass::IodinatedContrast), // Diatrizoate
    ("47192000", AgentClass::IodinatedContrast), // Meglumine diatrizoate
    ("90733003", AgentClass::IodinatedContrast), // Metrizamide
    ("354094002", AgentClass::IodinatedContrast), // Metrizoate
    ("89595000", AgentClass::IodinatedContrast), // Iodized oil
    ("62442005", AgentClass::IodinatedContrast), // Chloriodized oil
    ("73212002", AgentClass::IodinatedContrast), // Iodipamide
    ("69783005", AgentClass::IodinatedContrast), // Meglumine iodipamide
    // Gadolinium and its chelates.
    ("58281002", AgentClass::GadoliniumContrast), // Gadolinium
    ("768763008", AgentClass::GadoliniumContrast), // Gadolinium-containing product
    ("407976008", AgentClass::GadoliniumContrast), // Gadobutrol
    ("712714000", AgentClass::GadoliniumContrast), // Gadoterate meglumine
    ("353946009", AgentClass::GadoliniumContrast), // Gadoteridol
    ("792865009", AgentClass::GadoliniumContrast), // Gadobenate dimeglumine
    ("440223009", AgentClass::GadoliniumContrast), // Gadoxetate disodium
    ("109216000", AgentClass::GadoliniumContrast), // Gadopentetate dimeglumine
    ("354088005", AgentClass::GadoliniumContrast), // Gadodiamide
    ("409477004", AgentClass::GadoliniumContrast), // Gadoversetamide
    ("770982005", AgentClass::GadoliniumContrast), // Gadofosveset
];

/// Generic and brand names (upper case; matched as the start of a word) with the generic
/// name of the agent they are.
const NAMES: &[(&str, AgentClass, &str)] = &[
    // Iodinated.
    ("IOHEXOL", AgentClass::IodinatedContrast, "IOHEXOL"),
    ("IODIXANOL", AgentClass::IodinatedContrast, "IODIXANOL"),
    ("IOPAMIDOL", AgentClass::IodinatedContrast, "IOPAMIDOL"),
    ("IOPROMIDE", AgentClass::IodinatedContrast, "IOPROMIDE"),
    ("IOVERSOL", AgentClass::IodinatedContrast, "IOVERSOL"),
    ("IOMEPROL", AgentClass::IodinatedContrast, "IOMEPROL"),
    ("IOBITRIDOL", AgentClass::IodinatedContrast, "IOBITRIDOL"),
    ("IOXILAN", AgentClass::IodinatedContrast, "IOXILAN"),
    ("IOXAGLATE", AgentClass::IodinatedContrast, "IOXAGLATE"),
    ("IOTHALAMATE", AgentClass::IodinatedContrast, "IOTHALAMATE"),
    ("DIATRIZOATE", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    (
        "AMIDOTRIZOATE",
        AgentClass::IodinatedContrast,
        "DIATRIZOATE",
    ),
    (
        "ETHIODIZED",
        AgentClass::IodinatedContrast,
        "ETHIODIZED OIL",
    ),
    ("OMNIPAQUE", AgentClass::IodinatedContrast, "IOHEXOL"),
    ("VISIPAQUE", AgentClass::IodinatedContrast, "IODIXANOL"),
    ("ISOVUE", AgentClass::IodinatedContrast, "IOPAMIDOL"),
    ("IOPAMIRO", AgentClass::IodinatedContrast, "IOPAMIDOL"),
    ("SCANLUX", AgentClass::IodinatedContrast, "IOPAMIDOL"),
    ("ULTRAVIST", AgentClass::IodinatedContrast, "IOPROMIDE"),
    ("OPTIRAY", AgentClass::IodinatedContrast, "IOVERSOL"),
    ("IOMERON", AgentClass::IodinatedContrast, "IOMEPROL"),
    ("XENETIX", AgentClass::IodinatedContrast, "IOBITRIDOL"),
    ("OXILAN", AgentClass::IodinatedContrast, "IOXILAN"),
    ("HEXABRIX", AgentClass::IodinatedContrast, "IOXAGLATE"),
    ("CONRAY", AgentClass::IodinatedContrast, "IOTHALAMATE"),
    ("CYSTO-CONRAY", AgentClass::IodinatedContrast, "IOTHALAMATE"),
    ("GASTROGRAFIN", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    ("HYPAQUE", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    ("RENOGRAFIN", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    ("CYSTOGRAFIN", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    ("MD-76", AgentClass::IodinatedContrast, "DIATRIZOATE"),
    ("LIPIODOL", AgentClass::IodinatedContrast, "ETHIODIZED OIL"),
    ("ETHIODOL", AgentClass::IodinatedContrast, "ETHIODIZED OIL"),
    // Gadolinium.
    ("GADOBUTROL", AgentClass::GadoliniumContrast, "GADOBUTROL"),
    ("GADOTERATE", AgentClass::GadoliniumContrast, "GADOTERATE"),
    ("GADOTERIDOL", AgentClass::GadoliniumContrast, "GADOTERIDOL"),
    ("GADOBENATE", AgentClass::GadoliniumContrast, "GADOBENATE"),
    ("GADOXETATE", AgentClass::GadoliniumContrast, "GADOXETATE"),
    (
        "GADOPENTETATE",
        AgentClass::GadoliniumContrast,
        "GADOPENTETATE",
    ),
    ("GADODIAMIDE", AgentClass::GadoliniumContrast, "GADODIAMIDE"),
    (
        "GADOVERSETAMIDE",
        AgentClass::GadoliniumContrast,
        "GADOVERSETAMIDE",
    ),
    (
        "GADOPICLENOL",
        AgentClass::GadoliniumContrast,
        "GADOPICLENOL",
    ),
    (
        "GADOFOSVESET",
        AgentClass::GadoliniumContrast,
        "GADOFOSVESET",
    ),
    ("GADAVIST", AgentClass::GadoliniumContrast, "GADOBUTROL"),
    ("GADOVIST", AgentClass::GadoliniumContrast, "GADOBUTROL"),
    ("DOTAREM", AgentClass::GadoliniumContrast, "GADOTERATE"),
    ("CLARISCAN", AgentClass::GadoliniumContrast, "GADOTERATE"),
    ("PROHANCE", AgentClass::GadoliniumContrast, "GADOTERIDOL"),
    ("MULTIHANCE", AgentClass::GadoliniumContrast, "GADOBENATE"),
    ("EOVIST", AgentClass::GadoliniumContrast, "GADOXETATE"),
    ("PRIMOVIST", AgentClass::GadoliniumContrast, "GADOXETATE"),
    ("MAGNEVIST", AgentClass::GadoliniumContrast, "GADOPENTETATE"),
    ("OMNISCAN", AgentClass::GadoliniumContrast, "GADODIAMIDE"),
    (
        "OPTIMARK",
        AgentClass::GadoliniumContrast,
        "GADOVERSETAMIDE",
    ),
    ("ELUCIREM", AgentClass::GadoliniumContrast, "GADOPICLENOL"),
    ("VUEWAY", AgentClass::GadoliniumContrast, "GADOPICLENOL"),
    ("ABLAVAR", AgentClass::GadoliniumContrast, "GADOFOSVESET"),
    ("VASOVIST", AgentClass::GadoliniumContrast, "GADOFOSVESET"),
    // Radiopharmaceuticals.
    (
        "FLUORODEOXYGLUCOSE",
        AgentClass::Radiopharmaceutical,
        "FLUORODEOXYGLUCOSE",
    ),
    ("FDG", AgentClass::Radiopharmaceutical, "FLUORODEOXYGLUCOSE"),
    (
        "FLUDEOXYGLUCOSE",
        AgentClass::Radiopharmaceutical,
        "FLUORODEOXYGLUCOSE",
    ),
    (
        "FLORBETAPIR",
        AgentClass::Radiopharmaceutical,
        "FLORBETAPIR",
    ),
    (
        "FLORBETABEN",
        AgentClass::Radiopharmaceutical,
        "FLORBETABEN",
    ),
    (
        "FLUTEMETAMOL",
        AgentClass::Radiopharmaceutical,
        "FLUTEMETAMOL",
    ),
    (
        "FLORTAUCIPIR",
        AgentClass::Radiopharmaceutical,
        "FLORTAUCIPIR",
    ),
    (
        "FLUCICLOVINE",
        AgentClass::Radiopharmaceutical,
        "FLUCICLOVINE",
    ),
    (
        "PIFLUFOLASTAT",
        AgentClass::Radiopharmaceutical,
        "PIFLUFOLASTAT",
    ),
    (
        "FLOTUFOLASTAT",
        AgentClass::Radiopharmaceutical,
        "FLOTUFOLASTAT",
    ),
    (
        "FLUOROESTRADIOL",
        AgentClass::Radiopharmaceutical,
        "FLUOROESTRADIOL",
    ),
    ("DOTATATE", AgentClass::Radiopharmaceutical, "DOTATATE"),
    ("PSMA", AgentClass::Radiopharmaceutical, "PSMA"),
    ("SESTAMIBI", AgentClass::Radiopharmaceutical, "SESTAMIBI"),
    (
        "TETROFOSMIN",
        AgentClass::Radiopharmaceutical,
        "TETROFOSMIN",
    ),
    ("MEDRONATE", AgentClass::Radiopharmaceutical, "MEDRONATE"),
    ("IOFLUPANE", AgentClass::Radiopharmaceutical, "IOFLUPANE"),
    (
        "PENTETREOTIDE",
        AgentClass::Radiopharmaceutical,
        "PENTETREOTIDE",
    ),
    ("TECHNETIUM", AgentClass::Radiopharmaceutical, "TECHNETIUM"),
    ("THALLOUS", AgentClass::Radiopharmaceutical, "THALLOUS"),
    ("RUBIDIUM", AgentClass::Radiopharmaceutical, "RUBIDIUM"),
    ("AMYVID", AgentClass::Radiopharmaceutical, "FLORBETAPIR"),
    ("NEURACEQ", AgentClass::Radiopharmaceutical, "FLORBETABEN"),
    ("VIZAMYL", AgentClass::Radiopharmaceutical, "FLUTEMETAMOL"),
    ("TAUVID", AgentClass::Radiopharmaceutical, "FLORTAUCIPIR"),
    ("AXUMIN", AgentClass::Radiopharmaceutical, "FLUCICLOVINE"),
    ("PYLARIFY", AgentClass::Radiopharmaceutical, "PIFLUFOLASTAT"),
    ("POSLUMA", AgentClass::Radiopharmaceutical, "FLOTUFOLASTAT"),
    (
        "CERIANNA",
        AgentClass::Radiopharmaceutical,
        "FLUOROESTRADIOL",
    ),
    ("NETSPOT", AgentClass::Radiopharmaceutical, "DOTATATE"),
    ("DETECTNET", AgentClass::Radiopharmaceutical, "DOTATATE"),
    ("ILLUCCIX", AgentClass::Radiopharmaceutical, "PSMA"),
    ("LOCAMETZ", AgentClass::Radiopharmaceutical, "PSMA"),
    ("DATSCAN", AgentClass::Radiopharmaceutical, "IOFLUPANE"),
    ("CARDIOLITE", AgentClass::Radiopharmaceutical, "SESTAMIBI"),
    ("MYOVIEW", AgentClass::Radiopharmaceutical, "TETROFOSMIN"),
    ("CERETEC", AgentClass::Radiopharmaceutical, "EXAMETAZIME"),
    ("NEUROLITE", AgentClass::Radiopharmaceutical, "BICISATE"),
    ("CHOLETEC", AgentClass::Radiopharmaceutical, "MEBROFENIN"),
    (
        "OCTREOSCAN",
        AgentClass::Radiopharmaceutical,
        "PENTETREOTIDE",
    ),
    ("LUTATHERA", AgentClass::Radiopharmaceutical, "DOTATATE"),
    ("PLUVICTO", AgentClass::Radiopharmaceutical, "PSMA"),
    ("XOFIGO", AgentClass::Radiopharmaceutical, "RADIUM"),
    ("CARDIOGEN", AgentClass::Radiopharmaceutical, "RUBIDIUM"),
    ("RUBY-FILL", AgentClass::Radiopharmaceutical, "RUBIDIUM"),
    (
        "EXAMETAZIME",
        AgentClass::Radiopharmaceutical,
        "EXAMETAZIME",
    ),
    ("BICISATE", AgentClass::Radiopharmaceutical, "BICISATE"),
    ("MEBROFENIN", AgentClass::Radiopharmaceutical, "MEBROFENIN"),
    ("RADIUM", AgentClass::Radiopharmaceutical, "RADIUM"),
];

/// Upper-case words of a text (letters, digits and hyphens).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_uppercase)
}

/// The table entry a text names (a table name starting one of its words: "VISIPAQUE 320",
/// "Gadovist 1.0"; hyphenated words are tried by part too: "18F-FDG").
fn by_name(text: &str) -> Option<(AgentClass, &'static str)> {
    words(text).find_map(|w| {
        std::iter::once(w.as_str())
            .chain(w.split('-'))
            .filter(|part| !part.is_empty())
            .find_map(|part| {
                NAMES
                    .iter()
                    .find(|(n, _, _)| part.starts_with(n))
                    .map(|(_, c, generic)| (*c, *generic))
            })
    })
}

/// The class of a coded entry: SNOMED CT codes by the table, any code by its meaning.
fn by_code(code: &Code) -> Option<AgentClass> {
    let snomed = system_uri(&code.designator, code.scheme_uid.as_deref()).as_deref()
        == Some("http://snomed.info/sct");
    snomed
        .then(|| {
            SNOMED
                .iter()
                .find(|(v, _)| *v == code.value)
                .map(|(_, c)| *c)
        })
        .flatten()
        .or_else(|| by_name(&code.meaning).map(|(c, _)| c))
}

/// The class of what was given: codes, then names, then the older substring rules for
/// contrast; an agent from a radiopharmaceutical sequence is a radiopharmaceutical whatever
/// its name.
pub fn classify(
    codes: &[Code],
    names: &[&str],
    from_radiopharmaceutical_sequence: bool,
) -> Option<AgentClass> {
    if from_radiopharmaceutical_sequence {
        return Some(AgentClass::Radiopharmaceutical);
    }
    if let Some(c) = codes.iter().find_map(by_code) {
        return Some(c);
    }
    if let Some((c, _)) = names.iter().find_map(|n| by_name(n)) {
        return Some(c);
    }
    let all = names.join(" ").to_ascii_uppercase();
    if all.contains("GAD") {
        Some(AgentClass::GadoliniumContrast)
    } else if all.contains("IOD") || all.contains("CONTRAST") {
        Some(AgentClass::IodinatedContrast)
    } else {
        None
    }
}

/// Whether an allergy or medical-alert text names what was given: its class as a whole
/// (contrast agents cross-react within their class, so "Omnipaque" in the record warns of
/// Visipaque), or, for radiopharmaceuticals, which do not, the same agent (by any of its
/// names, its codes' meanings, or a table name for the same generic).
pub fn allergy_matches(allergy: &str, class: AgentClass, agent_names: &[&str]) -> bool {
    let a = allergy.to_uppercase();
    if class.allergy_words().iter().any(|w| a.contains(w)) {
        return true;
    }
    let named = by_name(allergy);
    if class != AgentClass::Radiopharmaceutical && named.map(|(c, _)| c) == Some(class) {
        return true;
    }
    let generics: Vec<&str> = agent_names
        .iter()
        .filter_map(|n| by_name(n))
        .map(|(_, g)| g)
        .collect();
    if named.is_some_and(|(_, g)| generics.contains(&g)) {
        return true;
    }
    agent_names
        .iter()
        .flat_map(|n| words(n))
        .filter(|w| w.len() >= 4 && w.chars().any(char::is_alphabetic))
        .any(|w| words(allergy).any(|x| x == w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_names_and_codes_are_classed() {
        let iodixanol = Code::new("353962003", "SCT", "Iodixanol");
        assert_eq!(
            classify(&[iodixanol], &["VISIPAQUE 320"], false),
            Some(AgentClass::IodinatedContrast)
        );
        // The brand alone, the code alone (meaning left out), a code under another meaning.
        assert_eq!(
            classify(&[], &["VISIPAQUE 320"], false),
            Some(AgentClass::IodinatedContrast)
        );
        assert_eq!(
            classify(&[Code::new("407976008", "SCT", "")], &[], false),
            Some(AgentClass::GadoliniumContrast)
        );
        assert_eq!(
            classify(&[], &["Gadovist 1.0"], false),
            Some(AgentClass::GadoliniumContrast)
        );
        assert_eq!(
            classify(&[], &["OMNIPAQUE 350", "IODINE"], false),
            Some(AgentClass::IodinatedContrast)
        );
        assert_eq!(
            classify(&[], &["IOHEXOL"], false),
            Some(AgentClass::IodinatedContrast)
        );
        assert_eq!(
            classify(&[], &["GADOBUTROL", "GADOLINIUM"], false),
            Some(AgentClass::GadoliniumContrast)
        );
        assert_eq!(
            classify(&[], &["18F-FDG"], false),
            Some(AgentClass::Radiopharmaceutical)
        );
        assert_eq!(
            classify(&[], &["Fluorodeoxyglucose"], true),
            Some(AgentClass::Radiopharmaceutical)
        );
        assert_eq!(classify(&[], &["SALINE"], false), None);
        // Ioflupane is an I-123 tracer, not iodinated contrast.
        assert_eq!(
            classify(&[], &["DaTscan"], false),
            Some(AgentClass::Radiopharmaceutical)
        );
    }

    #[test]
    fn allergies_name_a_class_or_an_agent() {
        let iod = AgentClass::IodinatedContrast;
        assert!(allergy_matches("contrast dye", iod, &["VISIPAQUE 320"]));
        assert!(allergy_matches("Iodinated contrast - hives", iod, &[]));
        assert!(allergy_matches(
            "Omnipaque (rash 2019)",
            iod,
            &["VISIPAQUE 320"]
        ));
        assert!(allergy_matches("visipaque", iod, &["VISIPAQUE 320"]));
        assert!(!allergy_matches("penicillin", iod, &["VISIPAQUE 320"]));
        let gad = AgentClass::GadoliniumContrast;
        assert!(allergy_matches("Gadolinium", gad, &["GADAVIST"]));
        assert!(allergy_matches("Dotarem - anaphylaxis", gad, &["GADAVIST"]));
        assert!(!allergy_matches("contrast dye", gad, &["GADAVIST"]));
        let rp = AgentClass::Radiopharmaceutical;
        assert!(allergy_matches("FDG", rp, &["Fluorodeoxyglucose"]));
        assert!(allergy_matches("radiotracer", rp, &["Fluorodeoxyglucose"]));
        assert!(!allergy_matches("latex", rp, &["Fluorodeoxyglucose"]));
        // Another tracer is not the same agent.
        assert!(!allergy_matches("Amyvid", rp, &["Fluorodeoxyglucose"]));
    }
}
