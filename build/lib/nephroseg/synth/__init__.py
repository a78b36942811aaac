"""Synthetic KiTS-like contrast CT: procedural phantoms, CT painted onto real masks, whole cohorts.

``generate_case(seed, config)`` builds one abdomen (body wall, spine and ribs, vessels, liver,
spleen, bowel, lung bases, two bean-shaped kidneys with cortex, pyramids and collecting system,
0–6 tumors and simple cysts) as a tissue map, turns it into HU and imitates the scanner (slice
profile, partial-volume blur, correlated noise, cupping). ``paint_from_mask`` paints the same
anatomy around the kidneys of an existing KiTS label map. ``synthesize_cohort`` writes either in
the KiTS19 layout with a ``kits.json``. Arrays are canonical (slices, rows, columns) = I-P-L.

HU drawn per case (uniform within the range; ``intensity.draw_appearance``), and why:

==================  =====================  ==========================================================
tissue              HU                     rationale
==================  =====================  ==========================================================
air / bowel gas     -1000 / -990..-940     outside the body is air; gas in bowel is diluted a little
lung base           -880..-820             aerated lung, a little denser at the dependent base
subcut. fat         -115..-95              pure adipose tissue
visceral fat        subcut. + 0..15        mesenteric fat holds small vessels, so reads a bit denser
perirenal/sinus     -110..-85              fat inside Gerota's fascia and the renal sinus
skin                20..60                 dense dermis, thin enough to blur with fat
muscle              40..65                 skeletal muscle after contrast (unenhanced is 35..50)
liver               80..100 / 100..130     arterial / venous: the liver enhances via the portal vein
spleen              105..140 / 95..130     enhances early and strongly
pancreas            100..140 / 80..110     peaks in the late arterial (pancreatic) phase
aorta, arteries     200..300 / 130..190    arterial bolus vs recirculated contrast
IVC, portal veins   70..130 / 130..180     veins fill later (arterial: mixed, venous: full)
renal vein          140..220 / 130..180    kidneys return contrast fast: bright already in arterial
bowel wall          70..120                enhancing mucosa
bowel fluid         0..30 (150..350)       water-like; 20 % of cases have positive oral contrast
stool               -80..20 + gas bubbles  mixed faeces and gas
bile                0..20                  gallbladder: water density
CSF / disc          0..15 / 70..110        water; fibrocartilage
cortical bone       600..1200              dense cortex; the top of the range falls with age
trabecular bone     150..300               cancellous bone; the top falls with age (osteopenia)
costal cartilage    90..180                partly calcified cartilage
kidney cortex       160..250 / 140..200 /  corticomedullary (late arterial) / nephrographic /
                    140..180               excretory phase
kidney medulla      70..130 / cortex-0..15 darker than cortex in the corticomedullary phase only;
                    / cortex-10..+20       equal later, then concentrating contrast (excretory)
pelvis, ureter      0..30 (400..900)       urine; excreted contrast in the excretory phase (10 %)
simple cyst         0..20                  water density (Bosniak I); labelled kidney as in KiTS19
ccRCC               60..150, SD 12..30     hypervascular but below cortex, heterogeneous
papillary RCC       30..70, SD 4..10       hypo-enhancing, homogeneous
chromophobe         60..110                moderate, homogeneous
oncocytoma          80..140 (+ scar)       fairly bright, occasional central scar
angiomyolipoma      40..90 + fat -90..-40  soft tissue with macroscopic fat
clear cell papill.  50..100                in between
iso-dense tumor     parenchyma - (-5..18)  a quarter of tumors (not AML): hard to see, on purpose
necrosis            5..35                  necrotic core of larger tumors, mostly ccRCC
table               150..350 / -900..-800  carbon-fibre shell / foam core
==================  =====================  ==========================================================

Noise SD is 8..25 HU (``SynthConfig.noise_sd_hu``), larger for higher BMI; all tumor means are
capped at parenchyma + 10 HU, so none is brighter than the kidney around it.
"""

from nephroseg.synth.cohort import clinical_record, synthesize_cohort
from nephroseg.synth.config import SynthConfig
from nephroseg.synth.measure import largest_tumor_diameter_mm, radiographic_size_cm
from nephroseg.synth.paint import paint_case_from_mask, paint_from_mask
from nephroseg.synth.phantom import CaseInfo, SyntheticCase, TumorInfo, generate_case, kits_affine, plan_info

__all__ = [
    "CaseInfo",
    "SynthConfig",
    "SyntheticCase",
    "TumorInfo",
    "clinical_record",
    "generate_case",
    "kits_affine",
    "largest_tumor_diameter_mm",
    "paint_case_from_mask",
    "paint_from_mask",
    "plan_info",
    "radiographic_size_cm",
    "synthesize_cohort",
]
