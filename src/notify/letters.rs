//! The suspension e-mail in the customer's language: plain words for what
//! was found, when, the report id, what an L-SPAM code means and what to do
//! next, consistent with when the customer may unblock the mailbox. The
//! wording is built in (English, Italian, French, Greek); an operator's
//! template file replaces the body and keeps the same placeholders.

pub use crate::config::Language;

/// One language's wording. Placeholders: `{account}`, `{tier}`,
/// `{report_id}`, `{at}`, `{found}`, `{how_to_unblock}`, `{reason}`
/// (the technical explanation), and in `unblock_from`: `{from}`, `{days}`.
pub struct Letter {
    pub subject: &'static str,
    pub body: &'static str,
    /// The customer may unblock from the panel now.
    pub unblock_now: &'static str,
    /// The customer may unblock from the panel from `{from}`.
    pub unblock_from: &'static str,
    /// Only the abuse team can lift it.
    pub abuse_only: &'static str,
    /// When no symbol has a description.
    pub nothing_named: &'static str,
}

/// The built-in letter of `language`.
pub fn letter(language: Language) -> &'static Letter {
    match language {
        Language::En => &EN,
        Language::It => &IT,
        Language::Fr => &FR,
        Language::El => &EL,
    }
}

const EN: Letter = Letter {
    subject: "[{tier}] Outgoing mail of {account} suspended",
    body: "\
Hello,

on {at} we suspended outgoing mail from {account}: it sent a message that
looks like spam or malware. Mail sent to you still arrives; only sending is
blocked. Report {report_id}, code {tier}.

What we found in that message:
{found}

The codes L-SPAM20 to L-SPAM40 mean that sending is suspended; the higher
the number, the more serious or the more repeated the abuse. Usually the
password of the mailbox has been stolen, or a computer or website that
sends through it is infected.

What to do now:
  1. Change the password of {account}, and of every other mailbox or
     service that used the same password.
  2. Check the computers and phones that send from this mailbox with an
     up-to-date antivirus. If the mail came from your website, update its
     software and plugins and remove unknown files.
  3. {how_to_unblock}

-- 
Abuse team
",
    unblock_now: "Then unblock the mailbox yourself in the control panel (\"Mail abuse\" page). This is possible once every {days} days.",
    unblock_from: "Then unblock the mailbox yourself in the control panel (\"Mail abuse\" page), from {from}. This is possible once every {days} days; before then only our abuse team can unblock it.",
    abuse_only: "This block can only be lifted by our abuse team: reply to this message once you have done the above.",
    nothing_named: "  - several signs of spam together (see the report)",
};

const IT: Letter = Letter {
    subject: "[{tier}] Invio di posta da {account} sospeso",
    body: "\
Gentile cliente,

il {at} abbiamo sospeso l'invio di posta da {account}: ha inviato un
messaggio che ha l'aspetto di spam o di malware. La posta in arrivo continua
a essere consegnata; è bloccato solo l'invio. Rapporto {report_id}, codice
{tier}.

Che cosa abbiamo trovato nel messaggio:
{found}

I codici da L-SPAM20 a L-SPAM40 indicano che l'invio è sospeso; più alto è
il numero, più grave o ripetuto è l'abuso. Di solito la password della
casella è stata rubata, oppure un computer o un sito che invia tramite la
casella è infetto.

Che cosa fare ora:
  1. Cambi la password di {account} e di ogni altra casella o servizio che
     usava la stessa password.
  2. Controlli con un antivirus aggiornato i computer e i telefoni che
     inviano da questa casella. Se la posta partiva dal suo sito web, ne
     aggiorni il software e i plugin e rimuova i file sconosciuti.
  3. {how_to_unblock}

-- 
Servizio abusi
",
    unblock_now: "Poi sblocchi la casella dal pannello di controllo (pagina \"Abusi posta\"). È possibile una volta ogni {days} giorni.",
    unblock_from: "Poi sblocchi la casella dal pannello di controllo (pagina \"Abusi posta\"), a partire dal {from}. È possibile una volta ogni {days} giorni; prima di allora può sbloccarla solo il nostro servizio abusi.",
    abuse_only: "Questo blocco può essere rimosso solo dal nostro servizio abusi: risponda a questo messaggio dopo aver svolto i passi indicati.",
    nothing_named: "  - diversi segnali di spam insieme (vedere il rapporto)",
};

const FR: Letter = Letter {
    subject: "[{tier}] Envoi de courrier depuis {account} suspendu",
    body: "\
Bonjour,

le {at}, nous avons suspendu l'envoi de courrier depuis {account} : un
message envoyé ressemble à du spam ou à un logiciel malveillant. Le courrier
qui vous est adressé continue d'arriver ; seul l'envoi est bloqué.
Rapport {report_id}, code {tier}.

Ce que nous avons trouvé dans ce message :
{found}

Les codes L-SPAM20 à L-SPAM40 signifient que l'envoi est suspendu ; plus le
numéro est élevé, plus l'abus est grave ou répété. En général, le mot de
passe de la boîte a été volé, ou un ordinateur ou un site qui envoie par
elle est infecté.

Que faire maintenant :
  1. Changez le mot de passe de {account}, et celui de toute autre boîte ou
     service qui utilisait le même mot de passe.
  2. Analysez les ordinateurs et téléphones qui envoient depuis cette boîte
     avec un antivirus à jour. Si le courrier venait de votre site web,
     mettez à jour son logiciel et ses extensions et supprimez les fichiers
     inconnus.
  3. {how_to_unblock}

-- 
Service abus
",
    unblock_now: "Débloquez ensuite la boîte vous-même dans le panneau de contrôle (page « Abus de messagerie »). C'est possible une fois tous les {days} jours.",
    unblock_from: "Débloquez ensuite la boîte vous-même dans le panneau de contrôle (page « Abus de messagerie »), à partir du {from}. C'est possible une fois tous les {days} jours ; avant cette date, seul notre service abus peut la débloquer.",
    abuse_only: "Seul notre service abus peut lever ce blocage : répondez à ce message une fois les étapes ci-dessus effectuées.",
    nothing_named: "  - plusieurs signes de spam à la fois (voir le rapport)",
};

const EL: Letter = Letter {
    subject: "[{tier}] Η αποστολή αλληλογραφίας από το {account} ανεστάλη",
    body: "\
Αγαπητέ πελάτη,

στις {at} αναστείλαμε την αποστολή αλληλογραφίας από το {account}: έστειλε
μήνυμα που μοιάζει με spam ή κακόβουλο λογισμικό. Η εισερχόμενη
αλληλογραφία εξακολουθεί να παραδίδεται· μπλοκαρισμένη είναι μόνο η
αποστολή. Αναφορά {report_id}, κωδικός {tier}.

Τι βρήκαμε στο μήνυμα:
{found}

Οι κωδικοί L-SPAM20 έως L-SPAM40 σημαίνουν ότι η αποστολή έχει ανασταλεί·
όσο μεγαλύτερος ο αριθμός, τόσο σοβαρότερη ή συχνότερη η κατάχρηση.
Συνήθως ο κωδικός πρόσβασης του λογαριασμού έχει κλαπεί ή ένας υπολογιστής
ή ιστότοπος που στέλνει μέσω αυτού έχει μολυνθεί.

Τι πρέπει να κάνετε:
  1. Αλλάξτε τον κωδικό πρόσβασης του {account} και κάθε άλλου λογαριασμού
     ή υπηρεσίας που χρησιμοποιούσε τον ίδιο κωδικό.
  2. Ελέγξτε με ενημερωμένο antivirus τους υπολογιστές και τα τηλέφωνα που
     στέλνουν από αυτόν τον λογαριασμό. Αν η αλληλογραφία προερχόταν από
     τον ιστότοπό σας, ενημερώστε το λογισμικό και τα πρόσθετά του και
     αφαιρέστε άγνωστα αρχεία.
  3. {how_to_unblock}

-- 
Ομάδα καταχρήσεων
",
    unblock_now: "Στη συνέχεια ξεμπλοκάρετε μόνοι σας τον λογαριασμό από τον πίνακα ελέγχου (σελίδα «Κατάχρηση αλληλογραφίας»). Αυτό είναι δυνατό μία φορά κάθε {days} ημέρες.",
    unblock_from: "Στη συνέχεια ξεμπλοκάρετε μόνοι σας τον λογαριασμό από τον πίνακα ελέγχου (σελίδα «Κατάχρηση αλληλογραφίας»), από {from}. Αυτό είναι δυνατό μία φορά κάθε {days} ημέρες· πριν από τότε μόνο η ομάδα καταχρήσεών μας μπορεί να τον ξεμπλοκάρει.",
    abuse_only: "Αυτό το μπλοκάρισμα μπορεί να το άρει μόνο η ομάδα καταχρήσεών μας: απαντήστε σε αυτό το μήνυμα αφού ολοκληρώσετε τα παραπάνω βήματα.",
    nothing_named: "  - πολλές ενδείξεις spam μαζί (δείτε την αναφορά)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_letter_has_every_placeholder() {
        for language in [Language::En, Language::It, Language::Fr, Language::El] {
            let l = letter(language);
            for p in [
                "{account}",
                "{tier}",
                "{report_id}",
                "{at}",
                "{found}",
                "{how_to_unblock}",
            ] {
                assert!(l.body.contains(p), "{} body lacks {p}", language.as_str());
            }
            assert!(l.subject.contains("{account}"));
            assert!(l.unblock_from.contains("{from}") && l.unblock_from.contains("{days}"));
            assert!(l.unblock_now.contains("{days}"));
        }
    }
}
